"""The spec knows each dataset's feature count, so it can reject models that cannot read it."""

from __future__ import annotations

import pytest

from regcore.data import build_dataset
from regcore.spec import DATASET_FEATURES, DataSpec, SpecError, parse_spec


@pytest.mark.parametrize("name", sorted(DATASET_FEATURES))
def test_the_declared_feature_count_is_what_the_data_have(name, cache_dir):
    small = {"n_train": 20, "n_val": 10, "n_test": 10}
    data = build_dataset(DataSpec(name=name, **small), seed=0, cache_dir=cache_dir)
    assert data.in_features == DATASET_FEATURES[name]


def test_a_transformer_patch_that_does_not_divide_the_input_is_a_field_error():
    with pytest.raises(SpecError) as err:
        parse_spec({"data": {"name": "wine"}, "model": {"name": "transformer", "patch_size": 4}})
    assert err.value.errors[0]["field"] == "model.patch_size"
    assert "[1, 13]" in err.value.errors[0]["message"]
    parse_spec({"data": {"name": "wine"}, "model": {"name": "transformer", "patch_size": 13}})


def test_specs_that_would_exhaust_a_worker_are_field_errors():
    cases = [
        ({"data": {"name": "mnist1d", "n_train": 10**9}, "model": {"name": "mlp"}}, "data.n_train"),
        (
            {"data": {"name": "mnist1d"}, "model": {"name": "mlp", "hidden": [10**6]}},
            "model.hidden[0]",
        ),
        ({"data": {"name": "mnist1d"}, "model": {"name": "mlp", "hidden": [8192] * 4}}, "model"),
    ]
    for spec, field in cases:
        with pytest.raises(SpecError) as err:
            parse_spec(spec)
        assert err.value.errors[0]["field"] == field
    assert "parameters" in err.value.errors[0]["message"]


def test_the_parameter_estimate_counts_an_mlps_weights_exactly(tmp_path, cache_dir):
    from regcore.models.params import weights
    from regcore.spec import estimated_parameters
    from tests.regcore.runs import make_spec, trainer

    for model in (
        {"name": "mlp", "hidden": [64, 32]},
        {"name": "resmlp", "width": 16, "blocks": 2},
    ):
        spec = make_spec(model=model)
        t = trainer(spec, tmp_path, cache_dir)
        assert estimated_parameters(spec.model, 40, 10) == sum(w.numel() for w in weights(t.model))


def test_a_cnn_without_conv_layers_is_a_field_error_not_a_crash():
    spec = {"data": {"name": "wine"}, "model": {"name": "cnn1d", "channels": [], "hidden": []}}
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert err.value.errors[0]["field"] == "model.channels"
