"""Transfer: pretrain → fine-tune, a frozen body, multi-task heads, self-supervision, and
early stopping's retrain on train+val."""

from __future__ import annotations

import json

import pytest
import torch

from regcore.data import build_dataset
from regcore.ensemble.members import build_trainer
from regcore.experiment import kind_of, run
from regcore.spec import SpecError
from regcore.transfer.finetune import body_state, load_body, regroup
from regcore.transfer.multitask import mnist1d_shifts
from regcore.transfer.self_supervised import masked_reconstruction_loss
from tests.regcore.runs import history, make_spec

REAL = {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 500}
CNN = {"name": "cnn1d", "channels": [16, 16], "hidden": [64]}
ADAM = {"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 20, "device": "cpu"}
SOURCE = {"name": "mnist1d", "n_train": 3000, "n_val": 200, "n_test": 200}


def test_pretraining_on_generated_mnist1d_beats_scratch_on_300_real_examples(tmp_path, cache_dir):
    base = {"data": REAL, "model": CNN, "train": ADAM}
    scratch = run(make_spec(**base), tmp_path / "s", cache_dir=cache_dir, checkpoint_every=0)
    pre = {"source": SOURCE, "generator": {"iid_noise_scale": 0.05}, "epochs": 8}
    spec = make_spec(**base, pretrain=pre)
    assert kind_of(spec) == "pretrain"
    tuned = run(spec, tmp_path / "p", cache_dir=cache_dir, checkpoint_every=0)
    # measured over seeds 0-2: scratch 0.31-0.35, pretrained 0.58-0.64
    assert tuned.metrics["test_acc"] > scratch.metrics["test_acc"] + 0.2
    assert "pretrain_test_acc" in tuned.metrics  # both stages report
    keys = set(history(tmp_path / "p"))
    assert {"pretrain_train_loss", "train_loss"} <= keys


def test_a_frozen_fine_tune_leaves_every_body_weight_bit_identical(tmp_path, cache_dir):
    spec = make_spec(data=REAL, model=CNN, train={**ADAM, "epochs": 2})
    data = build_dataset(spec.data, spec.seed, cache_dir)
    source = build_trainer(spec.model_copy(update={"seed": 5}), tmp_path / "a", data, None)
    source.run()
    fine = build_trainer(spec, tmp_path / "b", data, None)
    load_body(fine.model, source.model)
    regroup(fine, freeze=True, body_lr_scale=1.0)
    head_before = fine.model.head().weight.detach().clone()
    before = {k: v.clone() for k, v in body_state(fine.model).items()}
    fine.run()
    after = body_state(fine.model)
    assert before.keys() == after.keys() and len(before) >= 4
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(after[k], source.model.state_dict()[k]) for k in after)
    assert not torch.equal(head_before, fine.model.head().weight)


@pytest.mark.parametrize(
    "reg",
    [{"name": "max_norm", "c": 0.05}, {"name": "spectral", "mode": "project", "c": 0.05}],
    ids=["max_norm", "spectral_project"],
)
def test_weight_editing_regularizers_leave_a_frozen_body_bit_identical(reg, tmp_path, cache_dir):
    data_spec = {"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50}
    mlp = {"name": "mlp", "hidden": [32, 32]}
    spec = make_spec(
        data=data_spec, model=mlp, train={**ADAM, "epochs": 1}, regularizers=[reg, {"name": "l2"}]
    )
    data = build_dataset(spec.data, spec.seed, cache_dir)
    source = build_trainer(make_spec(data=data_spec, model=mlp, seed=5), tmp_path / "a", data, None)
    fine = build_trainer(spec, tmp_path / "b", data, None)
    load_body(fine.model, source.model)
    regroup(fine, freeze=True, body_lr_scale=1.0)
    before = {k: v.clone() for k, v in body_state(fine.model).items()}
    fine.run()
    after = body_state(fine.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the head was constrained, and only head weights are penalized
    assert float(fine.model.head().weight.detach().norm(dim=1).max()) <= 0.05 + 1e-5
    head = {id(p) for p in fine.model.head().parameters()}
    assert fine.regs[1].params and all(id(p) in head for p in fine.regs[1].params)


def test_an_unfrozen_fine_tune_trains_the_body_at_the_scaled_rate(tmp_path, cache_dir):
    spec = make_spec(data=REAL, model=CNN, train={**ADAM, "epochs": 1})
    data = build_dataset(spec.data, spec.seed, cache_dir)
    fine = build_trainer(spec, tmp_path, data, None)
    regroup(fine, freeze=False, body_lr_scale=0.1)
    lrs = [g["lr"] for g in fine.optimizer.param_groups]
    assert lrs == pytest.approx([0.003, 0.0003])
    n_params = sum(len(g["params"]) for g in fine.optimizer.param_groups)
    assert n_params == len(list(fine.model.parameters()))


def test_a_source_of_another_input_size_is_refused_with_the_parameter_named(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8]},
        train={**ADAM, "epochs": 1},
        pretrain={"source": {"name": "digits"}, "epochs": 1},
    )
    with pytest.raises(ValueError, match="does not fit the target model"):
        run(spec, tmp_path, cache_dir=cache_dir, checkpoint_every=0)


def test_shift_targets_line_up_with_the_dataset(cache_dir):
    spec = make_spec(data=REAL)
    train, val, test = mnist1d_shifts(spec)
    assert (len(train), len(val), len(test)) == (300, 100, 500)
    assert 0 <= train.min() and train.max() < 48 and train.std() > 5


def test_multitask_trains_both_heads_and_reports_both(tmp_path, cache_dir):
    spec = make_spec(
        data=REAL,
        model={"name": "mlp", "hidden": [64]},
        train={**ADAM, "epochs": 8},
        multitask={"target": "shift", "weight": 0.5},
    )
    assert kind_of(spec) == "multitask"
    r = run(spec, tmp_path, cache_dir=cache_dir, checkpoint_every=0)
    h = history(tmp_path)
    assert h["aux_train_loss"][-1] < 0.8 * h["aux_train_loss"][0]  # the auxiliary head learns
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert len(h["penalty_multitask"]) == 8 and len(h["aux_val_loss"]) == 8
    assert {"aux_test_loss", "test_acc"} <= set(r.metrics)


def test_multitask_shift_is_for_mnist1d_only():
    with pytest.raises(SpecError, match="peak"):
        make_spec(data={"name": "digits"}, multitask={"target": "shift"})


def test_masked_reconstruction_loss_counts_only_masked_features():
    net = torch.nn.Identity()
    x = torch.ones(4, 10)
    # the identity reproduces unmasked features and outputs 0 where masked: error 1 each
    assert masked_reconstruction_loss(net, x, 0.5).item() == pytest.approx(1.0)


def test_self_supervised_pretraining_then_fine_tuning_reports_both_stages(tmp_path, cache_dir):
    spec = make_spec(
        data=REAL,
        model={"name": "mlp", "hidden": [64]},
        train={**ADAM, "epochs": 4},
        self_supervised={"mask": 0.25, "epochs": 5},
    )
    r = run(spec, tmp_path, cache_dir=cache_dir, checkpoint_every=0)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    recon = [x["value"] for x in lines if x["key"] == "pretrain_val_recon_loss"]
    assert len(recon) == 5 and recon[-1] < recon[0]
    assert {"pretrain_recon_loss", "test_acc"} <= set(r.metrics) and r.epochs_run == 4


def test_retrain_on_train_val_retrains_for_the_found_epoch_count(tmp_path, cache_dir):
    es = {"name": "early_stopping", "patience": 3, "retrain_on_train_val": True}
    spec = make_spec(
        data={**REAL, "n_train": 200}, regularizers=[es], train={**ADAM, "epochs": 40, "lr": 0.01}
    )
    assert kind_of(spec) == "retrain_on_train_val"
    r = run(spec, tmp_path, cache_dir=cache_dir, checkpoint_every=0)
    found = int(r.metrics["retrain_epochs"])
    h = history(tmp_path)
    assert len(h["search_val_loss"]) > found  # the search ran past its best epoch, then stopped
    assert len(h["train_loss"]) == found == r.epochs_run
    assert int(h["search_val_loss"].index(min(h["search_val_loss"]))) + 1 == found
    assert r.metrics["train_examples"] == 300


@pytest.mark.parametrize("stage", ["self_supervised", "retrain_on_train_val"])
def test_a_stage_that_diverges_fails_the_run_and_says_which(stage, tmp_path, cache_dir):
    """A NaN in pretraining (or in early stopping's search) fails the run at once: its body (or
    its epoch count) is worthless, so nothing is fine-tuned (or retrained) from it."""
    diverging = {**ADAM, "optimizer": "sgd", "lr": 10.0, "momentum": 0.99, "epochs": 3}
    if stage == "self_supervised":
        spec = make_spec(
            data=REAL,
            model={"name": "mlp", "hidden": [64]},
            train=diverging,
            self_supervised={"mask": 0.25, "epochs": 3, "lr": 10.0},
        )
        said = "pretraining failed: recon_loss became"
    else:
        es = {"name": "early_stopping", "patience": 3, "retrain_on_train_val": True}
        l2 = {"name": "l2", "strength": 1e4}  # diverges within the first epoch
        spec = make_spec(data=REAL, regularizers=[l2, es], train={**ADAM, "optimizer": "sgd"})
        said = "the early-stopping search failed:"
    r = run(spec, tmp_path, cache_dir=cache_dir, checkpoint_every=0)
    assert r.status == "failed" and r.reason.startswith(said), r.reason
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
    keys = {json.loads(x)["key"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()}
    assert "train_loss" not in keys  # the second stage never ran; the first's epochs are there
    assert keys and all(k.startswith(("pretrain_", "search_")) for k in keys)
