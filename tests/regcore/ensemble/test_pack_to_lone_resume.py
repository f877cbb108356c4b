"""A sweep trial that trained in a pack resumes ALONE from its pack-member checkpoint
(``regcore.ensemble.lone_resume``) and ends exactly as its uninterrupted lone run; a member
whose checkpoint says it had ended starts over instead."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from regcore.ensemble.lone_resume import lone_state
from regcore.ensemble.pack import PackMember, run_pack
from regcore.training.checkpoint import load_checkpoint
from tests.regcore.ensemble.test_pack_resume import points
from tests.regcore.runs import history, make_spec, train, trainer

EPOCHS = 4
KEYS = ("train_loss", "val_loss", "test_loss", "test_acc", "weight_l2")


class Recorder:
    """A reporter that keeps a copy of its ``last`` checkpoint of epoch ``keep_at`` in
    ``keep`` (when given): a pack's checkpoint of that epoch, later overwritten."""

    def __init__(self, keep: Path | None, keep_at: int = 2, stop_after: int | None = None):
        self.keep, self.keep_at, self.stop_after = keep, keep_at, stop_after
        self.info: dict = {}
        self.epochs: list[int] = []

    def on_start(self, info):
        self.info = info

    def on_epoch(self, epoch, metrics):
        self.epochs.append(epoch)

    def on_checkpoint(self, info):
        if self.keep is not None and info.kind == "last" and info.epoch == self.keep_at:
            shutil.copytree(info.sidecar.parent, self.keep)

    def should_cancel(self):
        return False

    def should_stop(self):
        return self.stop_after is not None and len(self.epochs) >= self.stop_after


def specs(optimizer: str):
    train = {"optimizer": optimizer, "lr": 0.05, "batch_size": 50, "epochs": EPOCHS}
    if optimizer == "sgd":
        train["momentum"] = 0.9
    return [
        # a schedule and early stopping: the lr and the early stopping's best weights and
        # counter are part of what goes over to the lone run
        make_spec(
            train={**train, "schedule": "step", "step_size": 1, "gamma": 0.7},
            regularizers=[
                {"name": "l2", "strength": 1e-3},
                {"name": "dropout", "p": 0.2},
                {"name": "label_smoothing", "epsilon": 0.1},
                {"name": "early_stopping", "patience": 10, "monitor": "val_loss"},
            ],
        ),
        make_spec(
            train=train,
            regularizers=[
                {"name": "l2", "strength": 1e-2},
                {"name": "dropout", "p": 0.4},
                {"name": "label_smoothing", "epsilon": 0.2},
            ],
        ),
    ]


def run_the_pack(ss, root: Path, reps, cache_dir):
    members = [
        PackMember(s, root / f"t{i}", r) for i, (s, r) in enumerate(zip(ss, reps, strict=True))
    ]
    return run_pack(members, root / "pack", cache_dir=cache_dir, threads=1, checkpoint_every=2)


def alone_from(keep: Path, member_dir: Path, workdir: Path) -> Path:
    """A lone run's workdir as the worker leaves it: the recorded checkpoint in
    ``checkpoints/`` and the member's metrics log (written past the checkpoint's epoch)."""
    workdir.mkdir(parents=True)
    shutil.copytree(keep, workdir / "checkpoints")
    shutil.copy(member_dir / "metrics.jsonl", workdir / "metrics.jsonl")
    return workdir


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_pack_member_resumed_alone_from_its_pack_checkpoint_ends_as_its_lone_run(
    optimizer, tmp_path, cache_dir
):
    ss = specs(optimizer)
    reps = [Recorder(tmp_path / f"kept{i}") for i in range(2)]
    packed = run_the_pack(ss, tmp_path / "p", reps, cache_dir)
    lone = train(ss[0], tmp_path / "lone", cache_dir, checkpoint_every=2)

    # the conversion gives the very state the lone run saved at the same epoch
    kept = load_checkpoint(tmp_path / "kept0", "last", ss[0].spec_hash())
    assert kept is not None and kept.train_state["pack"] == "pack"
    assert kept.train_state["epoch"] == 2 and kept.train_state["status"] == "running"
    weights, state = lone_state(
        trainer(ss[0], tmp_path / "fresh", cache_dir), kept.model_state, kept.train_state
    )
    # the lone run's own state after epoch 2 (its epoch-2 checkpoint, a spec of 2 epochs)
    two = ss[0].model_copy(update={"train": ss[0].train.model_copy(update={"epochs": 2})})
    assert train(two, tmp_path / "lone2", cache_dir, checkpoint_every=2).epochs_run == 2
    ref = load_checkpoint(tmp_path / "lone2" / "checkpoints", "last")
    assert ref is not None
    for k, v in ref.model_state.items():
        assert torch.equal(weights[k], v), k
    want, got = ref.train_state, state
    assert got["step_index"] == want["step_index"] == 20
    assert got["best"] == want["best"]
    assert got["pass"]["epoch"] == want["pass"]["epoch"] == 2  # a whole pass: no order left
    assert got["pass"]["order"] is want["pass"]["order"] is None
    assert got["optimizer"]["param_groups"][0]["lr"] == want["optimizer"]["param_groups"][0]["lr"]
    assert set(got["optimizer"]["state"]) == set(want["optimizer"]["state"])
    for i, slot in want["optimizer"]["state"].items():
        for key, v in slot.items():
            assert torch.equal(got["optimizer"]["state"][i][key].to(v.dtype), v), (i, key)
    assert torch.equal(got["rng"]["torch"], want["rng"]["torch"])  # the dropout stream
    assert torch.equal(got["rng"]["generators"]["shuffle"], want["rng"]["generators"]["shuffle"])
    assert got["scheduler"]["last_epoch"] == want["scheduler"]["last_epoch"] == 2
    es_got, es_want = got["regularizers"][3], want["regularizers"][3]
    assert (es_got["best"], es_got["best_at"], es_got["bad_epochs"]) == (
        es_want["best"], es_want["best_at"], es_want["bad_epochs"]
    )  # fmt: skip
    for k, v in es_want["best_state"].items():  # the weights it restores at the end
        assert torch.equal(es_got["best_state"][k], v), k

    # member 0 resumes alone from its epoch-2 pack checkpoint, through the lone run's path
    workdir = alone_from(tmp_path / "kept0", tmp_path / "p" / "t0", tmp_path / "alone")
    rep = Recorder(None)
    resumed = train(ss[0], workdir, cache_dir, checkpoint_every=1, resume=True, reporter=rep)
    assert rep.info["resumed"] and rep.info["start_epoch"] == 2 and rep.epochs == [3, 4]
    assert resumed.status == "succeeded" and resumed.epochs_run == EPOCHS
    assert resumed.best_epoch == lone.best_epoch
    for key in KEYS:
        # the same weights to the bit (a member is bit for bit its lone run), measured by the
        # same lone code: equal; the pack's own evaluation agrees to rounding (~2e-7 seen)
        assert resumed.metrics[key] == lone.metrics[key], key
        assert resumed.metrics[key] == pytest.approx(packed[0].metrics[key], abs=1e-6), key
    got_points = points(workdir)
    assert len(got_points) == len(set(got_points))  # cut back to epoch 2: no point twice
    assert sorted(got_points) == sorted(points(tmp_path / "lone"))
    # epochs 1-2 are the pack's points (its evaluation: to rounding), 3-4 the lone run's own
    got_history, want_history = history(workdir), history(tmp_path / "lone")
    assert set(got_history) == set(want_history)
    for key, values in want_history.items():
        assert got_history[key] == pytest.approx(values, abs=1e-6), key
        assert got_history[key][2:] == values[2:], key


def test_a_pack_member_that_had_ended_starts_over_alone_and_ends_as_its_lone_run(
    tmp_path, cache_dir
):
    """Member 1 is stopped by its scheduler after epoch 1 (saved then, as ended): its
    checkpoint is no epoch to go on from alone, so the lone run starts from epoch 0."""
    ss = specs("sgd")
    reps = [Recorder(tmp_path / "kept0"), Recorder(tmp_path / "kept1", 1, stop_after=1)]
    run_the_pack(ss, tmp_path / "p", reps, cache_dir)
    kept = load_checkpoint(tmp_path / "kept1", "last", ss[1].spec_hash())
    assert kept is not None and kept.train_state["status"] == "stopped"
    with pytest.raises(ValueError, match="had ended"):
        lone_state(trainer(ss[1], tmp_path / "fresh", cache_dir), kept.model_state,
                   kept.train_state)  # fmt: skip

    workdir = alone_from(tmp_path / "kept1", tmp_path / "p" / "t1", tmp_path / "alone")
    rep = Recorder(None)
    resumed = train(ss[1], workdir, cache_dir, checkpoint_every=1, resume=True, reporter=rep)
    lone = train(ss[1], tmp_path / "lone", cache_dir)
    assert not rep.info["resumed"] and rep.info["start_epoch"] == 0
    assert rep.epochs == list(range(1, EPOCHS + 1)) and resumed.epochs_run == EPOCHS
    for key in KEYS:
        assert resumed.metrics[key] == pytest.approx(lone.metrics[key], abs=1e-6), key
    assert sorted(points(workdir)) == sorted(set(points(workdir)))
