import math

import pytest
import torch
from torch.nn.utils import parametrize

from regcore.regularizers.l0 import (
    BETA,
    GAMMA,
    ZETA,
    HardConcreteGate,
    deterministic_gate,
    l0_penalty,
    prob_nonzero,
    sample_gate,
)
from tests.regcore.runs import history, make_spec, train, trainer


def test_constants_are_louizos_values_and_p_nonzero_matches_the_formula():
    assert (BETA, GAMMA, ZETA) == (2 / 3, -0.1, 1.1)
    # log α = 0: sigmoid(−β·log(γ/−ζ))... = sigmoid((2/3)·log 11)
    want = 1 / (1 + math.exp(-(2 / 3) * math.log(11)))
    assert float(prob_nonzero(torch.tensor(0.0))) == pytest.approx(want)
    assert float(l0_penalty([torch.zeros(2, 3), torch.zeros(4, 1)], [1, 5], 0.1)) == pytest.approx(
        0.1 * want * (6 + 4 * 5)
    )


def test_deterministic_gate_is_the_stretched_clamped_sigmoid():
    la = torch.tensor([0.0, -5.0, 5.0])
    assert torch.allclose(deterministic_gate(la), torch.tensor([0.5, 0.0, 1.0]))


def test_samples_lie_in_the_unit_interval_with_mass_at_both_ends():
    torch.manual_seed(0)
    z = sample_gate(torch.zeros(100_000))
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    # P(z > 0) by sampling agrees with the closed form
    assert float((z > 0).float().mean()) == pytest.approx(
        float(prob_nonzero(torch.tensor(0.0))), abs=0.01
    )


def test_configure_model_gates_hidden_linears_and_eval_uses_the_deterministic_gate(
    tmp_path, cache_dir
):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16, 8]}, regularizers=[{"name": "l0", "strength": 1e-3}]
    )
    t = trainer(spec, tmp_path, cache_dir)
    layers = [t.model.body[0], t.model.body[3]]
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not parametrize.is_parametrized(t.model.out)
    t.model.eval()
    gate = layers[0].parametrizations.weight[0]
    assert isinstance(gate, HardConcreteGate)
    w = layers[0].parametrizations.weight.original
    assert torch.allclose(layers[0].weight, w * deterministic_gate(gate.log_alpha))
    x = t.data.test.x[:4]
    assert torch.equal(t.model(x), t.model(x))
    t.model.train()
    assert not torch.equal(layers[0].weight, layers[0].weight)
    reg = t.regs[0]
    want = l0_penalty([g.log_alpha for g in reg.gates], [1, 1], 1e-3)
    assert float(reg.penalty(None).detach()) == pytest.approx(float(want))
    assert reg.extra_metrics(t.model)["l0_expected_nonzero"] == pytest.approx(
        float(want) / 1e-3, rel=1e-5
    )


def test_group_gates_close_whole_units_and_count_each_of_their_weights(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16]}, regularizers=[{"name": "l0", "group": True}]
    )
    t = trainer(spec, tmp_path, cache_dir)
    gate = t.regs[0].gates[0]
    assert gate.log_alpha.shape == (16, 1) and gate.per_gate == 40
    with torch.no_grad():
        gate.log_alpha[3] = -10.0
    t.model.eval()
    assert torch.all(t.model.body[0].weight[3] == 0) and torch.all(t.model.body[0].weight[2] != 0)
    assert t.regs[0].extra_metrics(t.model)["l0_closed_fraction"] == pytest.approx(1 / 16)


def test_closed_gates_grow_with_strength(tmp_path, cache_dir):
    # Adam, as Louizos et al.: with SGD the gate parameters move far too slowly to close gates
    run = {
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 200, "n_test": 300},
        "model": {"name": "mlp", "hidden": [128]},
        "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 25, "epochs": 20, "device": "cpu"},
    }
    closed, expected = [], []
    for lam in (0.0, 1e-3, 1e-2):
        regs = [{"name": "l0", "strength": lam, "init_drop": 0.5}]
        train(make_spec(regularizers=regs, **run), tmp_path / str(lam), cache_dir)
        h = history(tmp_path / str(lam))
        closed.append(h["l0_closed_fraction"][-1])
        expected.append(h["l0_expected_nonzero"][-1])
    assert closed[0] < closed[1] < closed[2]
    assert expected[0] > expected[1] > expected[2]  # E[#non-zero] falls as λ grows
    assert closed[1] > 0.05 and closed[2] > 0.5


def test_weight_metrics_count_closed_gates_as_zero_weights(tmp_path, cache_dir):
    from regcore.training.metrics import weight_metrics

    spec = make_spec(model={"name": "mlp", "hidden": [64]}, regularizers=[{"name": "l0"}])
    t = trainer(spec, tmp_path, cache_dir)
    gate = t.regs[0].gates[0]
    with torch.no_grad():  # close the first 75% of the hidden layer's gates
        flat = gate.log_alpha.view(-1)
        flat.fill_(5.0)
        flat[: int(0.75 * flat.numel())] = -10.0
    gated, total = flat.numel(), 40 * 64 + 64 * 10
    m = weight_metrics(t.model)
    assert m["sparsity"] == pytest.approx(0.75 * gated / total, abs=0.01)
    original = t.model.hidden_linears()[0].parametrizations.weight.original
    assert m["weight_l1"] < float(original.abs().sum()) * 0.4 + float(
        t.model.head().weight.abs().sum()
    )
    assert t.model.training  # the metrics leave the mode as they found it
