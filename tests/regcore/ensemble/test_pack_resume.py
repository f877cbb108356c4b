"""A pack resumes from its members' own ``last`` checkpoints: the same ends as an uninterrupted
pack, every metric point once; checkpoints that do not fit together start the pack over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from regcore.ensemble.pack import PackMember, run_pack
from regcore.training.checkpoint import load_checkpoint
from tests.regcore.runs import make_spec

EPOCHS = 6
KEYS = ("train_loss", "val_loss", "test_loss", "test_acc", "weight_l2")


class Recorder:
    def __init__(self, crash_in: int | None = None, stop_after: int | None = None):
        self.crash_in, self.stop_after = crash_in, stop_after
        self.info: dict = {}
        self.epochs: list[int] = []
        self.checkpoints: list[int] = []

    def on_start(self, info):
        self.info = info
        self.start = info["start_epoch"]

    def on_epoch(self, epoch, metrics):
        self.epochs.append(epoch)

    def on_checkpoint(self, info):
        self.checkpoints.append(info.epoch)

    def should_cancel(self):
        # a stand-in for a killed worker: raises on the first step of epoch ``crash_in``
        if self.crash_in is not None and self.start + len(self.epochs) == self.crash_in - 1:
            raise Crash
        return False

    def should_stop(self):
        return self.stop_after is not None and self.start + len(self.epochs) >= self.stop_after


class Crash(Exception):
    pass


def specs(optimizer: str = "sgd"):
    train = {"optimizer": optimizer, "lr": 0.05, "batch_size": 50, "epochs": EPOCHS}
    if optimizer == "sgd":
        train["momentum"] = 0.9
    return [
        make_spec(train=train, regularizers=[{"name": "dropout", "p": 0.2}]),
        make_spec(
            train={**train, "schedule": "step", "step_size": 2, "gamma": 0.5},
            regularizers=[{"name": "input_noise", "sigma": 0.2}, {"name": "l2", "strength": 1e-3}],
        ),
        # early stopping (patience 1): its best weights and counter are part of its state
        make_spec(
            train={**train, "lr": 0.3},
            regularizers=[{"name": "early_stopping", "patience": 1, "monitor": "val_loss"}],
        ),
        make_spec(train=train, regularizers=[{"name": "mixup", "alpha": 0.4}]),
        make_spec(train=train, regularizers=[{"name": "l2", "strength": 1e4}]),  # diverges
    ]


def pack(ss, root: Path, reps, **kw):
    members = [
        PackMember(s, root / f"t{i}", r) for i, (s, r) in enumerate(zip(ss, reps, strict=True))
    ]
    return run_pack(members, root / "pack", cache_dir=kw.pop("cache_dir"), threads=1, **kw)


def points(workdir: Path) -> list[tuple[int, str]]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(json.loads(x)["step"], json.loads(x)["key"]) for x in lines]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_pack_resumed_from_its_members_checkpoints_ends_as_an_uninterrupted_one(
    optimizer, tmp_path, cache_dir
):
    ss = specs(optimizer)
    # member 3 is stopped by its scheduler after epoch 2: it ends before the crash
    whole_reps = [Recorder(), Recorder(), Recorder(), Recorder(stop_after=2), Recorder()]
    whole = pack(ss, tmp_path / "w", whole_reps, cache_dir=cache_dir, checkpoint_every=2)
    assert whole[3].epochs_run == 2
    reps = [Recorder(crash_in=5), Recorder(), Recorder(), Recorder(stop_after=2), Recorder()]
    with pytest.raises(Crash):  # after epoch 4's checkpoint, in epoch 5
        pack(ss, tmp_path / "r", reps, cache_dir=cache_dir, checkpoint_every=2)
    last = load_checkpoint(tmp_path / "r" / "t0" / "checkpoints", "last", ss[0].spec_hash())
    assert last is not None and last.train_state["epoch"] == 4
    assert last.train_state["optimizer"]["state"], "the member's optimizer slice is saved"
    again = [Recorder(), Recorder(), Recorder(), Recorder(stop_after=2), Recorder()]
    resumed = pack(ss, tmp_path / "r", again, cache_dir=cache_dir, checkpoint_every=2, resume=True)
    assert all(r.info["resumed"] and r.info["start_epoch"] == 4 for r in again)
    assert again[0].epochs == [5, 6]
    assert again[3].epochs == [] and again[3].checkpoints == []  # ended; its checkpoint stands
    if optimizer == "sgd":  # adam's steps do not blow up on it
        assert whole[4].status == "failed" and again[4].checkpoints == []
    for i in range(5):
        assert resumed[i].status == whole[i].status and resumed[i].reason == whole[i].reason
        assert resumed[i].epochs_run == whole[i].epochs_run
        if resumed[i].status == "failed":
            continue
        assert resumed[i].best_epoch == whole[i].best_epoch
        for key in KEYS:
            assert resumed[i].metrics[key] == pytest.approx(whole[i].metrics[key], abs=1e-6), (
                i,
                key,
            )
        got, want = points(tmp_path / "r" / f"t{i}"), points(tmp_path / "w" / f"t{i}")
        assert len(got) == len(set(got)) and sorted(got) == sorted(want), i
    assert whole[2].epochs_run < EPOCHS or optimizer == "adam"  # early stopping did act (sgd)


def test_a_resumed_pack_may_hold_fewer_members_than_the_one_that_wrote_them(tmp_path, cache_dir):
    """Each member's state is its own: a member dropped (cancelled while the worker was down)
    leaves the others to resume, each on its own trajectory."""
    ss = specs()[:3]
    whole = pack(ss, tmp_path / "w", [Recorder() for _ in ss], cache_dir=cache_dir)
    with pytest.raises(Crash):
        pack(
            ss, tmp_path / "r", [Recorder(crash_in=4), Recorder(), Recorder()], cache_dir=cache_dir
        )
    reps = [Recorder(), Recorder()]
    members = [
        PackMember(ss[i], tmp_path / "r" / f"t{i}", r) for i, r in zip((0, 2), reps, strict=True)
    ]
    resumed = run_pack(
        members, tmp_path / "r" / "pack", cache_dir=cache_dir, threads=1, resume=True
    )
    assert reps[0].info["start_epoch"] == 3
    for r, i in zip(resumed, (0, 2), strict=True):
        assert r.metrics["test_loss"] == pytest.approx(whole[i].metrics["test_loss"], abs=1e-6)


def test_members_checkpointed_at_different_epochs_start_the_pack_over(tmp_path, cache_dir):
    ss = specs()[:2]
    whole = pack(ss, tmp_path / "w", [Recorder(), Recorder()], cache_dir=cache_dir)
    with pytest.raises(Crash):
        pack(ss, tmp_path / "r", [Recorder(crash_in=3), Recorder()], cache_dir=cache_dir)
    # member 1's checkpoint is of epoch 2, member 0's of epoch 1 (from another run)
    old = tmp_path / "r" / "t0" / "checkpoints"
    shutil.rmtree(old)
    with pytest.raises(Crash):
        pack(ss[:1], tmp_path / "r", [Recorder(crash_in=2)], cache_dir=cache_dir)
    assert load_checkpoint(old, "last").train_state["epoch"] == 1
    reps = [Recorder(), Recorder()]
    resumed = pack(ss, tmp_path / "r", reps, cache_dir=cache_dir, resume=True)
    for r in reps:
        assert not r.info["resumed"] and r.info["start_epoch"] == 0
        assert "different epochs" in r.info["not_resumed"], r.info
    assert reps[0].epochs == list(range(1, EPOCHS + 1))
    for i in range(2):
        assert resumed[i].metrics["test_loss"] == pytest.approx(
            whole[i].metrics["test_loss"], abs=1e-6
        )
        got = points(tmp_path / "r" / f"t{i}")
        assert len(got) == len(set(got)) and sorted(got) == sorted(points(tmp_path / "w" / f"t{i}"))


def test_a_member_without_a_checkpoint_starts_the_pack_over(tmp_path, cache_dir):
    ss = specs()[:2]
    with pytest.raises(Crash):
        pack(ss, tmp_path / "r", [Recorder(crash_in=3), Recorder()], cache_dir=cache_dir)
    shutil.rmtree(tmp_path / "r" / "t1" / "checkpoints")
    reps = [Recorder(), Recorder()]
    pack(ss, tmp_path / "r", reps, cache_dir=cache_dir, resume=True)
    assert (
        reps[0].info["start_epoch"] == 0
        and "member 1 has no checkpoint" in reps[0].info["not_resumed"]
    )


def test_an_engine_checkpoint_with_one_stacked_optimizer_state_still_loads(cache_dir):
    """Batched ensembles' checkpoints written before the optimizer state was kept per member."""
    import torch

    from regcore.data import build_dataset
    from regcore.ensemble.batched import BatchedMembers

    ss = specs()[:2]
    data = build_dataset(ss[0].data, ss[0].seed, cache_dir)

    def engine():
        return BatchedMembers(ss, data, device=torch.device("cpu"), threads=1)

    def epoch(eng):
        eng.train_epoch()
        per, _ = eng.evaluate()
        return eng.end_epoch(per)

    a = engine()
    for _ in range(2):
        epoch(a)
    old = {
        "batched": True,
        "epoch": a.epoch,
        "optimizer": a.optimizer.state_dict(),
        "members": [
            {
                k: v
                for k, v in a.member_train_state(i).items()
                if k not in ("epoch", "optimizer", "lr", "metrics")
            }
            for i in range(2)
        ],
    }
    b = engine()
    b.load(a.weights(), old)
    assert b.epoch == 2 and b.optimizer.steps == a.optimizer.steps
    for x, y in zip(epoch(a), epoch(b), strict=True):
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-7) and x["lr"] == y["lr"]
