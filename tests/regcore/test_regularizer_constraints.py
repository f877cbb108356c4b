"""Each regularizer's constraints are ClassVars beside its parameters (regularizer_specs.py), and
the validators read those, not tables of names: every declared constraint is refused where
it says, naming ``regularizers[i]``, and a constraint set on a class that had none takes effect."""

from __future__ import annotations

import pytest

from regcore import regularizer_specs as r
from regcore.regularizers.batched import BATCHED, why_not_batchable
from regcore.spec import DataInfo, SpecError, parse_spec, regularizer_spec_classes

MODELS = ("mlp", "linear", "gru", "cnn1d", "resmlp", "transformer")
UPLOAD = "ab" * 16
TABLE = DataInfo("classification", "table", (100, 5), 2)


def _name(cls: type[r.RegularizerSpec]) -> str:
    return cls.model_fields["name"].default


def _with(*classes) -> list[type[r.RegularizerSpec]]:
    return [c for c in r.ALL if any(getattr(c, attr) for attr in classes)]


def _spec(data: str, model: str, *regs: type[r.RegularizerSpec], **more) -> dict:
    regularizers = [{"name": _name(c)} for c in regs]
    return {"data": {"name": data}, "model": {"name": model}, "regularizers": regularizers, **more}


def _refusal(spec: dict, **kw) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(spec, **kw)
    return info.value.errors[0]


def test_the_union_and_the_catalog_are_the_one_list_in_definition_order():
    assert regularizer_spec_classes() == list(r.ALL)
    assert len(r.ALL) == len(r.BY_NAME) == 46
    assert all(r.BY_NAME[_name(c)] is c for c in r.ALL)


CONSTRAINTS = (
    "models",
    "needs_layout",
    "classification_only",
    "bayesian",
    "needs_unlabeled",
    "replaces_gradient",
    "averages_weights",
    "not_batched_because",
)


def test_constraints_are_not_fields_and_not_in_the_schema():
    for cls in r.ALL:
        properties = cls.model_json_schema().get("properties", {})
        assert not set(CONSTRAINTS) & (set(cls.model_fields) | set(properties)), cls.__name__


@pytest.mark.parametrize("cls", _with("models"), ids=_name)
def test_a_regularizer_with_models_is_refused_on_another_and_accepted_on_its_own(cls):
    other = next(m for m in MODELS if m not in cls.models)
    err = _refusal(_spec("mnist1d", other, r.L2Spec, cls))
    assert err["field"] == "regularizers[1]"
    assert f"applies to the {cls.models[0]}" in err["message"] and f"not {other}" in err["message"]
    own = parse_spec(_spec("mnist1d", cls.models[0], cls))
    assert own.regularizers[0].name == _name(cls)


@pytest.mark.parametrize("cls", _with("classification_only"), ids=_name)
def test_a_classification_only_regularizer_is_refused_on_regression_data(cls):
    err = _refusal(_spec("toy1d", "mlp", cls))
    assert err["field"] == "regularizers[0]"
    assert f"{_name(cls)} needs a classification dataset" in err["message"]


@pytest.mark.parametrize("cls", _with("needs_layout"), ids=_name)
def test_a_layout_bound_regularizer_is_refused_on_a_table(cls):
    spec = _spec("upload", "mlp", cls)
    spec["data"]["id"] = UPLOAD
    err = _refusal(spec, datasets={UPLOAD: TABLE})
    assert err["field"] == "regularizers[0]"
    assert "needs 1D signals or single-channel images" in err["message"]


def test_two_bayesian_methods_are_refused_and_the_rest_that_pair_by_classvar():
    pairs = [
        (_with("bayesian")[:2], "one Bayesian method"),
        (_with("replaces_gradient")[:2], "each replace the gradient"),
        ([r.EarlyStoppingSpec, _with("averages_weights")[0]], "returns its averaged weights"),
    ]
    for classes, words in pairs:
        assert len(classes) == 2
        spec = _spec("mnist1d", "mlp", *classes, train={"momentum": 0.0})
        assert words in _refusal(spec)["message"]


@pytest.mark.parametrize("cls", _with("needs_unlabeled"), ids=_name)
def test_a_regularizer_that_needs_unlabelled_data_says_so(cls):
    err = _refusal(_spec("mnist1d", "mlp", cls))
    assert err["field"] == "regularizers[0]"
    assert "set data.n_unlabeled" in err["message"]


def test_a_constraint_set_on_a_class_takes_effect_without_any_table(monkeypatch):
    """The validators read the ClassVars: give l2 constraints it does not have and it is refused."""
    spec = _spec("toy1d", "mlp", r.L2Spec)
    parse_spec(spec)
    monkeypatch.setattr(r.L2Spec, "classification_only", True)
    assert "l2 needs a classification dataset" in _refusal(spec)["message"]
    monkeypatch.setattr(r.L2Spec, "classification_only", False)
    monkeypatch.setattr(r.L2Spec, "models", ("gru",))
    err = _refusal(spec)
    assert (
        err["field"] == "regularizers[0]" and "applies to the gru model, not mlp" in err["message"]
    )
    monkeypatch.setattr(r.DropConnectSpec, "not_batched_because", "a reason of its own")
    assert why_not_batchable("dropconnect", [r.DropConnectSpec()]) == (
        "regularizer dropconnect is not batched: a reason of its own"
    )


@pytest.mark.parametrize("cls", _with("not_batched_because"), ids=_name)
def test_a_regularizer_that_cannot_batch_says_why_and_is_not_batched(cls):
    assert _name(cls) not in BATCHED
    reason = why_not_batchable(_name(cls), [cls()])
    assert reason == f"regularizer {_name(cls)} is not batched: {cls.not_batched_because}"


def test_the_batched_table_names_only_catalog_regularizers():
    assert set(BATCHED) <= set(r.BY_NAME)
    assert all(BATCHED[n].spec_name == n for n in BATCHED)
