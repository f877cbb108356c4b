"""Which parameters count as weights for penalties and the weight metrics."""

from __future__ import annotations

from regcore.models.params import classify_parameters, named_penalized
from tests.regcore.runs import make_spec, trainer


def test_biases_and_norm_parameters_are_not_weights(tmp_path, cache_dir):
    spec = make_spec(model={"name": "mlp", "hidden": [8], "batch_norm": True})
    kinds = classify_parameters(trainer(spec, tmp_path, cache_dir).model)
    assert kinds["body.0.weight"] == "weight" and kinds["body.0.bias"] == "bias"
    assert kinds["body.1.weight"] == "norm" and kinds["out.weight"] == "weight"


def test_l0_gates_are_not_penalized_but_the_gated_weight_is(tmp_path, cache_dir):
    spec = make_spec(model={"name": "mlp", "hidden": [8]}, regularizers=[{"name": "l0"}])
    model = trainer(spec, tmp_path, cache_dir).model
    names = [n for n, _ in named_penalized(model, exclude=())]
    assert "body.0.parametrizations.weight.original" in names
    assert not any("log_alpha" in n for n in names)
    assert any("log_alpha" in n for n, _ in model.named_parameters())
