"""Dropout: masks in every hidden slot, inverted scaling, identity at eval; gen_gap falls."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.regcore.runs import make_spec, train, trainer

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 300, "n_val": 300, "n_test": 300},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 40, "device": "cpu"},
}


def test_a_dropout_layer_keeps_about_1_minus_p_and_scales_kept_units_by_1_over_1_minus_p():
    torch.manual_seed(0)
    layer = nn.Dropout(0.3).train()
    out = layer(torch.ones(200_000))
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.005)
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))


def test_dropout_puts_a_mask_in_every_hidden_slot_and_on_inputs_only_when_asked(
    tmp_path, cache_dir
):
    spec = make_spec(
        model={"name": "mlp", "hidden": [32, 16, 8]}, regularizers=[{"name": "dropout", "p": 0.4}]
    )
    model = trainer(spec, tmp_path, cache_dir).model
    hidden = model.slots("hidden")
    assert len(hidden) == 3
    for slot in hidden:
        assert [type(op) for op in slot.ops] == [nn.Dropout]
        assert slot.ops[0].p == 0.4
    assert all(len(slot.ops) == 0 for slot in model.slots("input"))

    spec = make_spec(regularizers=[{"name": "dropout", "p": 0.4, "input_p": 0.1}])
    model = trainer(spec, tmp_path / "b", cache_dir).model
    (inp,) = model.slots("input")
    assert [op.p for op in inp.ops] == [0.1]


def test_dropout_covers_conv_slots_of_a_cnn(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "cnn1d", "channels": [4, 4], "hidden": [8]},
        regularizers=[{"name": "dropout", "p": 0.2}],
    )
    model = trainer(spec, tmp_path, cache_dir).model
    slots = model.slots("conv", "hidden")
    assert len(slots) == 3
    assert all(isinstance(s.ops[0], nn.Dropout) for s in slots)


def test_the_mean_training_output_of_a_masked_slot_equals_its_input(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "dropout", "p": 0.5}])
    model = trainer(spec, tmp_path, cache_dir).model.train()
    slot = model.slots("hidden")[0]
    x = torch.randn(8, 16)
    torch.manual_seed(1)
    mean = torch.stack([slot(x) for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, x, atol=0.1 * x.abs().max().item())


def test_the_eval_pass_is_the_identity_and_deterministic(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "dropout", "p": 0.5, "input_p": 0.2}])
    t = trainer(spec, tmp_path, cache_dir)
    model = t.model.eval()
    x = t.data.val.x
    slot = model.slots("hidden")[0]
    h = torch.randn(5, 64)
    assert torch.equal(slot(h), h)
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("seed", [0, 1])
def test_dropout_shrinks_the_generalization_gap_of_an_overfit_mlp(tmp_path, cache_dir, seed):
    plain = train(make_spec(seed=seed, **OVERFIT), tmp_path / "plain", cache_dir).metrics
    spec = make_spec(seed=seed, regularizers=[{"name": "dropout", "p": 0.5}], **OVERFIT)
    dropped = train(spec, tmp_path / "dropout", cache_dir).metrics
    # measured: gen_gap 1.06-1.37 -> 0.64-0.79, acc gap 0.52-0.53 -> 0.34-0.38
    assert dropped["gen_gap"] < plain["gen_gap"] - 0.2
    acc_gap = {k: m["train_acc"] - m["val_acc"] for k, m in (("plain", plain), ("d", dropped))}
    assert acc_gap["d"] < acc_gap["plain"] - 0.08
