"""Batched members with their own hyperparameters end as they would training alone."""

from __future__ import annotations

import json

import pytest
import torch

from regcore.data import build_dataset
from regcore.ensemble.batched import why_not_batched
from regcore.ensemble.batched_run import BatchedEnsembleRun
from regcore.ensemble.members import build_trainer
from regcore.ensemble.pack import PackMember, pack_key, run_pack
from regcore.experiment import kind_of
from regcore.training.context import RunContext
from tests.regcore.runs import make_spec

TRAIN = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 50, "epochs": 3}
KEYS = ("train_loss", "val_loss", "test_loss", "test_acc", "weight_l2")

#: each batchable regularizer, and a second strength for another member
CASES = {
    "l2": ({"strength": 1e-3}, {"strength": 1e-2}),
    "l1": ({"strength": 1e-3}, {"strength": 1e-4}),
    "l1_proximal": ({"strength": 1e-3, "proximal": True}, {"strength": 3e-3, "proximal": True}),
    "elastic_net": ({"l1": 1e-3, "l2": 1e-3}, {"l1": 0.0, "l2": 1e-2}),
    "weight_decay": ({"rate": 0.01}, {"rate": 0.1}),
    "max_norm": ({"c": 0.5}, {"c": 2.0}),
    "dropout": ({"p": 0.3, "input_p": 0.1}, {"p": 0.1}),
    "gaussian_dropout": ({"p": 0.2}, {"p": 0.4}),
    "input_noise": ({"sigma": 0.1}, {"sigma": 0.3}),
    "weight_noise": ({"sigma": 0.01}, {"sigma": 0.05}),
    "hidden_noise": ({"sigma": 0.1}, {"sigma": 0.3}),
    "label_smoothing": ({"epsilon": 0.1}, {"rho": 0.2}),
    "flooding": ({"level": 0.5}, {"level": 1.0}),
    "entropy": ({"beta": 0.1}, {"beta": 0.3}),
    "early_stopping": ({"patience": 1}, {"patience": 2, "monitor": "val_acc"}),
    "disturb_label": ({"alpha": 0.1}, {"alpha": 0.3}),
    "mixup": ({"alpha": 0.2}, {"alpha": 1.0}),
    "activation_l1": ({"strength": 1e-3}, {"strength": 1e-2}),
    "cutout": ({"size": 5}, {"size": 10, "p": 0.5}),
    "cutmix": ({"alpha": 1.0}, {"alpha": 0.5, "p": 0.5}),
    "augment": ({}, {"transforms": ["shift", "noise"], "max_shift": 2}),
    "adversarial": ({"epsilon": 0.1, "alpha": 0.5}, {"epsilon": 0.05, "alpha": 0.7}),
    "adversarial_pgd": (
        {"method": "pgd", "epsilon": 0.1, "steps": 2},
        {"method": "pgd", "epsilon": 0.2, "steps": 2, "alpha": 0.3, "step_size": 0.05},
    ),
}


def _reg(case: str, params: dict) -> dict:
    return {"name": case.removesuffix("_proximal").removesuffix("_pgd"), **params}


def lone_metrics(spec, cache_dir, tmp_path):
    """Each member trained alone by its own Trainer, on the ensemble's data."""
    data = build_dataset(spec.data, spec.seed, cache_dir)
    out = []
    for i, ms in enumerate(spec.member_specs()):
        t = build_trainer(ms, tmp_path / f"lone{i}", data, None, threads=1)
        out.append(t.run())
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_member_ends_as_it_would_alone(case, tmp_path, cache_dir):
    a, b = CASES[case]
    epochs = 6 if case == "early_stopping" else 3
    train = {**TRAIN, "epochs": epochs, "lr": 0.3 if case == "early_stopping" else 0.1}
    vary = [
        {},
        {"train": {"lr": 0.05, "momentum": 0.5}, "regularizers": [_reg(case, b)]},
        {"regularizers": []},  # absent: a zero strength
    ]
    spec = make_spec(
        ensemble={"members": 3, "vary": vary}, regularizers=[_reg(case, a)], train=train
    )
    assert why_not_batched(spec) is None
    assert kind_of(spec) == "batched_ensemble"
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    batched = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)).run()
    assert batched.status == "succeeded"
    lone = lone_metrics(spec, cache_dir, tmp_path)
    for i, r in enumerate(lone):
        for key in KEYS:
            assert batched.metrics[f"member{i}_{key}"] == pytest.approx(r.metrics[key], abs=1e-4)
        assert batched.metrics[f"member{i}_epochs_run"] == r.epochs_run
    assert batched.metrics["member0_test_loss"] != batched.metrics["member1_test_loss"]
    if case == "early_stopping":  # the test means something only if a member stopped early
        assert min(r.epochs_run for r in lone) < epochs


def test_adam_members_with_their_own_lr_and_schedule_and_bagging(tmp_path, cache_dir):
    vary = [
        {},
        {"train": {"lr": 0.01}},
        {"train": {"lr": 0.003, "schedule": "step", "step_size": 1, "gamma": 0.5}},
    ]
    spec = make_spec(
        ensemble={"members": 3, "vary": vary, "bagging": True},
        regularizers=[{"name": "dropout", "p": 0.2}, {"name": "label_smoothing"}],
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 3},
    )
    assert why_not_batched(spec) is None
    from regcore.ensemble.runner import EnsembleRun

    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    a = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "a", **kw)).run().metrics
    b = EnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)).run().metrics
    for i in range(3):
        for key in KEYS:
            assert a[f"member{i}_{key}"] == pytest.approx(b[f"member{i}_{key}"], abs=1e-4)
    assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-4)


def test_what_cannot_batch_says_why():
    def why(**kw):
        return why_not_batched(make_spec(ensemble={"members": 2, **kw.pop("ens", {})}, **kw))

    assert "sam" in why(regularizers=[{"name": "sam"}])
    assert "per_layer" in why(regularizers=[{"name": "l2", "per_layer": {"body.0": 0.1}}])
    assert "orders" in why(
        regularizers=[{"name": "l2"}, {"name": "dropout"}],
        ens={"vary": [{}, {"regularizers": [{"name": "dropout"}, {"name": "l2"}]}]},
    )
    assert "mode" in why(
        regularizers=[{"name": "input_noise"}],
        ens={"vary": [{}, {"regularizers": [{"name": "input_noise", "mode": "multiplicative"}]}]},
    )
    assert "train.batch_size" in why(ens={"vary": [{}, {"train": {"batch_size": 10}}]})


def test_a_batched_run_resumes_where_it_stopped(tmp_path, cache_dir):
    regs = [{"name": "dropout", "p": 0.2}, {"name": "early_stopping", "patience": 5}]
    spec = make_spec(
        ensemble={"members": 2, "vary": [{}, {"train": {"lr": 0.05}}]},
        regularizers=regs,
        train=TRAIN,
    )
    full = BatchedEnsembleRun(
        RunContext.build(spec, tmp_path / "full", cache_dir=cache_dir, threads=1)
    ).run()
    short = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 2})})
    # the same members, two epochs: only the epoch count differs, so the hash is patched
    BatchedEnsembleRun(
        RunContext.build(short, tmp_path / "r", cache_dir=cache_dir, threads=1)
    ).run()
    ckdir = tmp_path / "r" / "checkpoints"
    side = json.loads((ckdir / "last.json").read_text())
    side["spec_hash"] = spec.spec_hash()
    (ckdir / "last.json").write_text(json.dumps(side))
    resumed = BatchedEnsembleRun(
        RunContext.build(spec, tmp_path / "r", cache_dir=cache_dir, threads=1)
    ).run(resume=True)
    assert resumed.epochs_run == 3
    for key in ("test_loss", "member0_test_loss", "member1_test_loss"):
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], abs=1e-6)


class Recorder:
    def __init__(self, cancel_at_epoch=None, stop_after=None, diverge=False):
        self.epochs, self.cancel_at, self.stop_after = [], cancel_at_epoch, stop_after
        self.checkpoints = 0

    def on_start(self, info):
        self.info = info

    def on_epoch(self, epoch, metrics):
        self.epochs.append((epoch, metrics))

    def on_checkpoint(self, info):
        self.checkpoints += 1

    def should_cancel(self):
        return self.cancel_at is not None and len(self.epochs) >= self.cancel_at

    def should_stop(self):
        return self.stop_after is not None and len(self.epochs) >= self.stop_after


def test_a_pack_reports_each_member_as_its_own_run(tmp_path, cache_dir):
    base = {"train": TRAIN}
    specs = [
        make_spec(regularizers=[{"name": "l2", "strength": s}], **base) for s in (1e-4, 1e-2)
    ] + [
        make_spec(regularizers=[{"name": "dropout", "p": 0.2}], **base),
        make_spec(regularizers=[{"name": "l2", "strength": 1e4}], **base),  # diverges
        make_spec(regularizers=[], **base),
    ]
    assert len({pack_key(s) for s in specs}) == 1
    reps = [Recorder(), Recorder(stop_after=1), Recorder(), Recorder(), Recorder(cancel_at_epoch=2)]
    members = [
        PackMember(s, tmp_path / f"t{i}", r)
        for i, (s, r) in enumerate(zip(specs, reps, strict=True))
    ]
    results = run_pack(members, tmp_path / "pack", cache_dir=cache_dir, threads=1)
    assert [r.status for r in results] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert [r.epochs_run for r in results] == [3, 1, 3, 1, 2]
    assert "stopped" in results[1].reason and "became" in results[3].reason
    data = build_dataset(specs[0].data, specs[0].seed, cache_dir)
    for i in (0, 2):  # the same as alone
        alone = build_trainer(specs[i], tmp_path / f"a{i}", data, None, threads=1).run()
        assert results[i].metrics["test_loss"] == pytest.approx(
            alone.metrics["test_loss"], abs=1e-4
        )
        assert [e for e, _ in reps[i].epochs] == [1, 2, 3]
        assert set(alone.metrics) <= set(reps[i].epochs[-1][1]) | {"epochs_run", "best_epoch"}
        lines = (tmp_path / f"t{i}" / "metrics.jsonl").read_text().splitlines()
        assert {json.loads(x)["step"] for x in lines} == {1, 2, 3}
        assert (
            json.loads((tmp_path / f"t{i}" / "summary.json").read_text())["status"] == "succeeded"
        )
    assert reps[3].epochs == []  # the diverged member reported no epoch of NaNs
    assert reps[0].checkpoints == 3 and reps[1].checkpoints == 1


def test_sgd_on_stacked_parameters_is_torch_sgd(tmp_path):
    from regcore.ensemble.stacked import StackedOptimizer

    torch.manual_seed(0)
    w = [torch.randn(4, 3, requires_grad=True) for _ in range(2)]
    stacked = {"w": torch.stack([x.detach() for x in w]).requires_grad_(True)}
    opts = [
        torch.optim.SGD([x], lr=lr, momentum=m, nesterov=True)
        for x, lr, m in zip(w, (0.1, 0.3), (0.9, 0.5), strict=True)
    ]
    ours = StackedOptimizer(stacked, "sgd", [0.9, 0.5], True, (0.9, 0.999))
    for _ in range(3):
        g = torch.randn(2, 4, 3)
        for x, gi, o in zip(w, g, opts, strict=True):
            x.grad = gi.clone()
            o.step()
        stacked["w"].grad = g
        ours.step([0.1, 0.3], [True, True])
    assert torch.allclose(stacked["w"], torch.stack([x.detach() for x in w]), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model", [{"name": "cnn1d"}, {"name": "resmlp"}, {"name": "linear"}])
def test_vmapped_and_linear_models_batch_too(model, tmp_path, cache_dir):
    regs = [{"name": "l2", "strength": 1e-3}, {"name": "label_smoothing"}]
    vary = [{}, {"train": {"lr": 0.05}, "regularizers": [{"name": "max_norm", "c": 1.0}]}]
    spec = make_spec(
        model=model,
        ensemble={"members": 2, "vary": vary},
        regularizers=regs,
        train={**TRAIN, "epochs": 2},
    )
    assert why_not_batched(spec) is None
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    batched = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)).run().metrics
    for i, r in enumerate(lone_metrics(spec, cache_dir, tmp_path)):
        for key in KEYS:
            assert batched[f"member{i}_{key}"] == pytest.approx(r.metrics[key], abs=1e-4)
    if model["name"] != "linear":  # dropout acts inside the model: the explicit MLP only
        dropout = make_spec(
            model=model, ensemble={"members": 2}, regularizers=[{"name": "dropout"}]
        )
        assert "vmapped" in why_not_batched(dropout)


def test_members_with_different_regularizer_sets_batch_and_match(tmp_path, cache_dir):
    full = [
        {"name": "input_noise", "sigma": 0.1},
        {"name": "mixup", "alpha": 0.4},
        {"name": "disturb_label", "alpha": 0.1},
        {"name": "label_smoothing", "epsilon": 0.05},
        {"name": "dropout", "p": 0.2},
        {"name": "l2", "strength": 1e-3},
        {"name": "adversarial", "epsilon": 0.05},
        {"name": "weight_decay", "rate": 0.01},
        {"name": "max_norm", "c": 1.5},
        {"name": "early_stopping", "patience": 2},
    ]
    vary = [{}, {"regularizers": full[1::2]}, {"regularizers": full[::3], "train": {"lr": 0.03}}]
    spec = make_spec(
        ensemble={"members": 3, "vary": vary}, regularizers=full, train={**TRAIN, "epochs": 4}
    )
    assert why_not_batched(spec) is None
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    batched = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)).run().metrics
    for i, r in enumerate(lone_metrics(spec, cache_dir, tmp_path)):
        for key in KEYS:
            assert batched[f"member{i}_{key}"] == pytest.approx(r.metrics[key], abs=1e-4)


def test_batch_norm_members_keep_their_own_statistics(tmp_path, cache_dir):
    vary = [{}, {"train": {"lr": 0.05}, "regularizers": [{"name": "adversarial"}]}]
    spec = make_spec(
        model={"name": "mlp", "hidden": [32, 32], "batch_norm": True},
        ensemble={"members": 2, "vary": vary, "bagging": True},
        regularizers=[{"name": "dropout", "p": 0.2}],
        train={**TRAIN, "epochs": 2},
    )
    assert why_not_batched(spec) is None
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    from regcore.ensemble.runner import EnsembleRun

    ra, rb = (
        BatchedEnsembleRun(RunContext.build(spec, tmp_path / "a", **kw)),
        EnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)),
    )
    a, b = ra.run(), rb.run()
    for i in range(2):
        for key in KEYS:
            assert a.metrics[f"member{i}_{key}"] == pytest.approx(
                b.metrics[f"member{i}_{key}"], abs=1e-4
            )
    for (name, x), y in zip(
        ra.model.state_dict().items(), rb.model.state_dict().values(), strict=True
    ):
        if "running" in name:  # eval uses them: each member's must be its own
            assert torch.allclose(x, y, atol=1e-4), name


class Crash(Exception):
    pass


class CrashInEpoch(Recorder):
    """Raises (a stand-in for a killed worker) on the first step of epoch ``at``."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def should_cancel(self):
        if len(self.epochs) == self.at - 1 and self.at:
            raise Crash
        return False


def test_a_pack_resumes_after_a_crash_without_losing_or_repeating_points(tmp_path, cache_dir):
    specs = [make_spec(regularizers=[{"name": "dropout", "p": p}], train=TRAIN) for p in (0.1, 0.3)]
    whole = run_pack(
        [PackMember(s, tmp_path / f"w{i}") for i, s in enumerate(specs)],
        tmp_path / "wp",
        cache_dir=cache_dir,
        threads=1,
    )
    crashing = [PackMember(s, tmp_path / f"t{i}", CrashInEpoch(3)) for i, s in enumerate(specs)]
    with pytest.raises(Crash):
        run_pack(crashing, tmp_path / "pack", cache_dir=cache_dir, threads=1)
    again = [PackMember(s, tmp_path / f"t{i}", Recorder()) for i, s in enumerate(specs)]
    resumed = run_pack(again, tmp_path / "pack", cache_dir=cache_dir, threads=1, resume=True)
    assert again[0].reporter.info["start_epoch"] == 2
    for i in range(2):
        assert resumed[i].metrics["test_loss"] == pytest.approx(
            whole[i].metrics["test_loss"], abs=1e-6
        )
        points = [
            json.loads(x) for x in (tmp_path / f"t{i}" / "metrics.jsonl").read_text().splitlines()
        ]
        keys = [(p["step"], p["key"]) for p in points]
        assert len(keys) == len(set(keys)) and {s for s, _ in keys} == {1, 2, 3}


def test_on_cpu_each_members_weights_are_its_lone_runs_bit_for_bit(tmp_path, cache_dir):
    """Stronger than the losses to 1e-4: with the benchmark's regularizers (l2, dropout, label
    smoothing, each member its own strengths, momentum 0.9), every weight of every member after
    4 epochs is exactly its lone run's (the batched step forms each product as the lone run's
    F.linear does and draws each member's masks from its own stream; one ulp anywhere would
    grow to ~1e-4 over these 160 steps)."""
    regs = [
        {"name": "l2", "strength": 1e-3},
        {"name": "dropout", "p": 0.2},
        {"name": "label_smoothing", "epsilon": 0.1},
    ]
    vary = [
        {},
        {"regularizers": [{**regs[0], "strength": 1e-2}, {**regs[1], "p": 0.4}, regs[2]]},
        {"train": {"lr": 0.05}, "regularizers": [regs[0], {**regs[1], "p": 0.1}]},
    ]
    spec = make_spec(
        ensemble={"members": 3, "vary": vary},
        regularizers=regs,
        train={**TRAIN, "epochs": 4, "batch_size": 25},
    )
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    run = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "b", **kw))
    assert run.run().status == "succeeded"
    data = build_dataset(spec.data, spec.seed, cache_dir)
    for i, ms in enumerate(spec.member_specs()):
        lone = build_trainer(ms, tmp_path / f"lone{i}", data, None, threads=1)
        assert lone.run().status == "succeeded"
        mine = run.engine.stack.member_state(i)
        for name, w in lone.model.state_dict().items():
            diff = float((mine[name] - w).abs().max())
            assert torch.equal(mine[name], w), f"member {i} {name}: max |Δ| {diff:.3g}"
