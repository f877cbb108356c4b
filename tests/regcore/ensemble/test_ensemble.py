"""Ensembles: combination, bagging, the regression decomposition, batched training, MC dropout."""

from __future__ import annotations

import json

import pytest
import torch

from regcore.data import build_dataset
from regcore.ensemble.batched import why_not_batched
from regcore.ensemble.batched_run import BatchedEnsembleRun
from regcore.ensemble.combine import combine_outputs, error_decomposition
from regcore.ensemble.members import bootstrap_indices, build_trainer
from regcore.ensemble.runner import EnsembleRun
from regcore.experiment import kind_of, run
from regcore.inference.mc_dropout import mc_outputs, predictive_entropy
from regcore.spec import SpecError, parse_spec
from regcore.training.checkpoint import load_checkpoint
from regcore.training.context import RunContext
from tests.regcore.runs import make_spec

TRAIN = {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 5, "device": "cpu"}


def test_mean_prob_is_the_log_of_the_mean_probability():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]], [[1.0, 0.0]]])
    out = combine_outputs(logits, "mean_prob", "classification")
    expected = logits.softmax(-1).mean(0)
    assert torch.allclose(out.exp(), expected)
    assert torch.allclose(out.log_softmax(-1), out)  # cross_entropy reads it as log p̄


def test_vote_follows_the_majority_and_median_the_middle_member():
    logits = torch.tensor([[[3.0, 0.0]], [[0.0, 0.1]], [[0.0, 0.2]]])
    assert combine_outputs(logits, "vote", "classification").argmax(-1).item() == 1
    assert combine_outputs(logits, "mean_prob", "classification").argmax(-1).item() == 0
    preds = torch.tensor([[[1.0]], [[5.0]], [[2.0]]])
    assert combine_outputs(preds, "median", "regression").item() == 2.0


def test_decomposition_matches_hand_computed_values():
    y = torch.zeros(2, 1)
    outs = torch.tensor([[[1.0], [2.0]], [[3.0], [-2.0]]])  # errors e1 = (1, 2), e2 = (3, -2)
    d = error_decomposition(outs, y)
    assert d["ens_v"] == pytest.approx((1 + 4 + 9 + 4) / 4)
    assert d["ens_c"] == pytest.approx((3 - 4) / 2)
    assert d["ens_sq_error"] == pytest.approx((2**2 + 0**2) / 2)


def test_bootstrap_draws_the_same_number_with_replacement_and_differs_by_seed():
    a, b = bootstrap_indices(300, 0), bootstrap_indices(300, 1)
    assert len(a) == len(b) == 300
    assert len(set(a.tolist())) < 300  # repeats: drawn with replacement
    assert 0.55 < len(set(a.tolist())) / 300 < 0.72  # about 1 − 1/e distinct
    assert not torch.equal(a, b)


def test_bagging_members_train_on_different_bootstrap_samples(tmp_path, cache_dir):
    spec = make_spec(ensemble={"members": 3, "bagging": True, "batched": "off"}, train=TRAIN)
    ens = EnsembleRun(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    )
    xs = [m.trainer.data.train.x for m in ens.members]
    assert all(x.shape == ens.data.train.x.shape for x in xs)
    assert not torch.equal(xs[0], xs[1]) and not torch.equal(xs[1], xs[2])
    for x, idx in zip(xs, ens.bootstrap, strict=True):
        assert torch.equal(x, ens.data.train.x[idx])


def test_ensemble_test_loss_is_below_the_mean_members_on_an_overfit_problem(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 200, "n_val": 100, "n_test": 500},
        model={"name": "mlp", "hidden": [128]},
        train={**TRAIN, "lr": 0.2, "epochs": 40, "batch_size": 25},
        ensemble={"members": 4},
    )
    r = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    m = r.metrics
    assert m["train_loss"] < 0.5 * m["test_loss"]  # overfit
    assert m["test_loss"] < m["member_mean_test_loss"] - 0.1
    assert {f"member{i}_test_acc" for i in range(4)} <= set(m)


def test_regression_decomposition_identity_holds_exactly(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "toy1d", "n_train": 30, "n_val": 30, "n_test": 200},
        model={"name": "mlp", "hidden": [32]},
        train={**TRAIN, "epochs": 20, "batch_size": 10},
        ensemble={"members": 5, "bagging": True},
    )
    m = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0).metrics
    k = 5
    assert m["ens_c"] != 0.0
    assert m["ens_sq_error"] == pytest.approx(m["ens_v"] / k + (k - 1) * m["ens_c"] / k, abs=1e-6)
    assert m["ens_sq_error"] == pytest.approx(m["test_loss"], rel=1e-5)  # mean combine
    assert m["ens_v"] == pytest.approx(m["member_mean_test_loss"], rel=1e-5)


def test_batched_members_match_their_one_by_one_runs(tmp_path, cache_dir):
    spec = make_spec(
        ensemble={"members": 3, "bagging": True},
        regularizers=[{"name": "l2", "strength": 1e-3}],
        train={**TRAIN, "optimizer": "adam", "lr": 0.003, "schedule": "cosine"},
    )
    assert kind_of(spec) == "batched_ensemble"
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    a = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "a", **kw)).run().metrics
    b = EnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)).run().metrics
    for i in range(3):
        for key in ("train_loss", "val_loss", "test_loss", "test_acc", "weight_l2"):
            assert a[f"member{i}_{key}"] == pytest.approx(b[f"member{i}_{key}"], abs=1e-4)
    assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-4)
    assert a["member0_test_loss"] != a["member1_test_loss"]


def test_specs_the_batched_path_cannot_reproduce_fall_back_to_one_by_one():
    spec = make_spec(ensemble={"members": 2}, regularizers=[{"name": "dropconnect", "p": 0.2}])
    assert "dropconnect" in why_not_batched(spec)
    assert kind_of(spec) == "ensemble"
    with pytest.raises(ValueError, match="batched is on"):
        kind_of(make_spec(ensemble={"members": 2, "batched": "on"}, regularizers=[{"name": "sam"}]))


def test_a_member_with_dropout_ends_as_it_would_training_alone(tmp_path, cache_dir):
    regs = [{"name": "dropout", "p": 0.3}]
    spec = make_spec(ensemble={"members": 2}, regularizers=regs, train={**TRAIN, "epochs": 2})
    ens = run(spec, tmp_path / "e", cache_dir=cache_dir, threads=1, checkpoint_every=0).metrics
    data = build_dataset(spec.data, spec.seed, cache_dir)
    lone = build_trainer(spec.member_specs()[1], tmp_path / "s", data, None, threads=1)
    alone = lone.run().metrics
    assert kind_of(spec) == "batched_ensemble"
    # its own dropout masks, drawn from its own stream inside the batched forward
    assert ens["member1_test_loss"] == pytest.approx(alone["test_loss"], abs=1e-5)
    assert ens["member0_test_loss"] != alone["test_loss"]


def test_checkpoint_holds_every_member_and_a_run_resumes(tmp_path, cache_dir):
    spec = make_spec(ensemble={"members": 2, "batched": "off"}, train={**TRAIN, "epochs": 3})
    full = run(spec, tmp_path / "full", cache_dir=cache_dir, threads=1).metrics
    ck = load_checkpoint(tmp_path / "full" / "checkpoints", "last")
    assert ck is not None and ck.epoch == 3
    assert {k.split(".")[0] for k in ck.model_state} == {"member0", "member1"}
    short = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 2})})
    EnsembleRun(RunContext.build(short, tmp_path / "r", cache_dir=cache_dir, threads=1)).run()
    # continue the 2-epoch checkpoint under the 3-epoch spec (same hash needs same spec: copy)
    ckdir = tmp_path / "r" / "checkpoints"
    side = json.loads((ckdir / "last.json").read_text())
    side["spec_hash"] = spec.spec_hash()
    (ckdir / "last.json").write_text(json.dumps(side))
    resumed = run(spec, tmp_path / "r", cache_dir=cache_dir, threads=1, resume=True).metrics
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], abs=1e-6)


def test_snapshot_ensemble_keeps_one_member_per_cycle(tmp_path, cache_dir):
    spec = make_spec(ensemble={"snapshot": {"cycles": 3}}, train={**TRAIN, "epochs": 6})
    r = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    assert len(r.model.members) == 3
    assert {"member0_test_loss", "member2_test_loss", "member_mean_test_loss"} <= set(r.metrics)
    lrs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lr = [x["value"] for x in lrs if x["key"] == "run_lr"]
    assert lr[1] == pytest.approx(TRAIN["lr"])  # restarted after the first 2-epoch cycle


def test_vary_gives_members_their_own_hyperparameters_and_names_bad_fields():
    spec = make_spec(ensemble={"members": 2, "vary": [{}, {"train": {"lr": 0.01}}]})
    assert [m.train.lr for m in spec.member_specs()] == [0.1, 0.01]
    assert [m.seed for m in spec.member_specs()] == [0, 1]
    with pytest.raises(SpecError, match=r"ensemble.vary\[1\].regularizers\[0\].p"):
        make_spec(
            ensemble={"members": 2, "vary": [{}, {"regularizers": [{"name": "dropout", "p": 2}]}]}
        )
    with pytest.raises(SpecError, match="vary has 1 entries"):
        parse_spec(
            {
                "data": {"name": "moons"},
                "model": {"name": "mlp"},
                "ensemble": {"members": 2, "vary": [{}]},
            }
        )


def test_mc_dropout_is_close_to_the_weight_scaling_pass(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "dropout", "p": 0.2}],
        mc_dropout={"passes": 30},
        train={**TRAIN, "epochs": 8},
    )
    m = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0).metrics
    assert abs(m["mc_test_acc"] - m["test_acc"]) < 0.03
    assert abs(m["mc_test_loss"] - m["test_loss"]) < 0.1
    assert 0.0 < m["mc_predictive_entropy"] < torch.log(torch.tensor(10.0)).item()


def test_mc_passes_differ_and_entropy_matches_its_formula():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    outs = mc_outputs(net, torch.randn(5, 4), passes=4)
    assert outs.shape == (4, 5, 3) and not torch.equal(outs[0], outs[1])
    assert net.training  # mode restored
    p = torch.tensor([[0.5, 0.5, 0.0]])
    assert predictive_entropy(p).item() == pytest.approx(0.6931472, abs=1e-6)
