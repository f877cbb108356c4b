"""The experiment spec: defaults, ranges, rejected fields and names, and no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from regcore.spec import ExperimentSpec, SpecError, parse_spec, regularizer_names

MINIMAL = {"data": {"name": "mnist1d"}, "model": {"name": "mlp"}}


def _errors(data) -> list[dict[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.errors


def _fields(data) -> list[str]:
    return [e["field"] for e in _errors(data)]


def test_only_data_and_model_are_required_and_the_rest_has_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.seed == 0
    assert spec.regularizers == []
    assert spec.train.optimizer == "sgd"
    assert spec.train.lr == 0.05
    assert spec.train.batch_size == 100
    assert spec.train.epochs == 20
    assert spec.train.device == "auto"
    assert spec.ensemble.members == 1
    assert spec.model.hidden == [100, 100]
    assert spec.data.label_noise == 0.0 and spec.data.standardize is True


def test_missing_data_or_model_is_named():
    assert "data" in _fields({"model": {"name": "mlp"}})
    assert "model" in _fields({"data": {"name": "mnist1d"}})


def test_regularizer_defaults_are_filled_in():
    spec = parse_spec({**MINIMAL, "regularizers": [{"name": "dropout"}, {"name": "l2"}]})
    assert spec.regularizers[0].p == 0.5
    assert spec.regularizers[1].strength == 1e-3
    assert spec.regularizers[1].exclude == ["bias", "norm"]


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_a_drop_probability_outside_0_to_1_is_rejected_with_its_path(p):
    data = {**MINIMAL, "regularizers": [{"name": "l2"}, {"name": "dropout", "p": p}]}
    assert _fields(data) == ["regularizers[1].p"]


@pytest.mark.parametrize("p", [0.0, 0.999])
def test_drop_probabilities_in_0_to_1_are_accepted(p):
    assert (
        parse_spec({**MINIMAL, "regularizers": [{"name": "dropout", "p": p}]}).regularizers[0].p
        == p
    )


def test_a_negative_strength_is_rejected():
    data = {**MINIMAL, "regularizers": [{"name": "l2", "strength": -1e-3}]}
    assert _fields(data) == ["regularizers[0].strength"]
    ok = parse_spec({**MINIMAL, "regularizers": [{"name": "l2", "strength": 0.0}]})
    assert ok.regularizers[0].strength == 0.0


def test_epochs_must_be_at_least_one():
    assert _fields({**MINIMAL, "train": {"epochs": 0}}) == ["train.epochs"]
    assert parse_spec({**MINIMAL, "train": {"epochs": 1}}).train.epochs == 1


def test_an_unknown_field_is_rejected_with_its_path():
    assert _fields({**MINIMAL, "train": {"learning_rate": 0.1}}) == ["train.learning_rate"]
    assert _fields({**MINIMAL, "colour": "red"}) == ["colour"]
    data = {**MINIMAL, "regularizers": [{"name": "dropout", "p": 0.5, "rate": 0.1}]}
    assert _fields(data) == ["regularizers[0].rate"]


def test_an_unknown_regularizer_name_lists_the_known_ones():
    (error,) = _errors({**MINIMAL, "regularizers": [{"name": "dropout"}, {"name": "dropall"}]})
    assert error["field"] == "regularizers[1].name"
    assert "dropall" in error["message"]
    for name in ("dropout", "l2", "early_stopping", "gaussian_dropout", "dropconnect"):
        assert name in error["message"]


def test_an_unknown_dataset_or_model_name_is_rejected_with_its_path():
    assert _fields({"data": {"name": "imagenet"}, "model": {"name": "mlp"}})[0].startswith(
        "data.name"
    )
    (error,) = _errors({"data": {"name": "mnist1d"}, "model": {"name": "vgg"}})
    assert error["field"].startswith("model")
    assert "mlp" in error["message"]


def test_the_message_of_a_spec_error_names_every_field():
    with pytest.raises(SpecError, match=r"regularizers\[1\]\.p"):
        parse_spec({**MINIMAL, "regularizers": [{"name": "l2"}, {"name": "dropout", "p": 2}]})


def test_split_sizes_beyond_a_shipped_dataset_are_rejected():
    assert _fields({"data": {"name": "wine", "n_train": 200}, "model": {"name": "mlp"}}) == ["data"]


def test_the_spec_hash_is_stable_and_sees_defaults():
    a = parse_spec(MINIMAL)
    b = parse_spec({**MINIMAL, "seed": 0, "train": {"lr": 0.05}})
    c = parse_spec({**MINIMAL, "seed": 1})
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


def test_a_spec_survives_a_json_round_trip():
    spec = parse_spec({**MINIMAL, "regularizers": [{"name": "dropout", "p": 0.2}]})
    assert ExperimentSpec.model_validate_json(spec.model_dump_json()) == spec


def test_every_catalog_name_is_unique():
    names = regularizer_names()
    assert len(names) == len(set(names))


def test_the_spec_module_does_not_import_torch():
    code = "import regcore.spec, regcore.catalog, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
