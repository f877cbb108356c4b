"""A pack reports each epoch of all its members before anything else of that epoch happens:
``epoch_reported`` comes once an epoch, after every member's ``on_epoch`` and before any of
that epoch's checkpoints (so a reporter may hold its points and write the pack's epoch once)."""

from __future__ import annotations

import json

import pytest

from regcore.ensemble.pack import PackMember, run_pack
from tests.regcore.runs import make_spec

EPOCHS = 4


class Log:
    def __init__(self, events: list, i: int):
        self.events, self.i = events, i

    def on_start(self, info):
        pass

    def on_epoch(self, epoch, metrics):
        self.events.append(("epoch", epoch, self.i))

    def on_checkpoint(self, info):
        self.events.append(("checkpoint", info.epoch, self.i))

    def should_cancel(self):
        return False


def test_the_epoch_is_reported_for_every_member_before_its_checkpoints(tmp_path, cache_dir):
    train = {"lr": 0.05, "batch_size": 50, "epochs": EPOCHS}
    ss = [
        make_spec(train=train, regularizers=[{"name": "dropout", "p": p}]) for p in (0.1, 0.3, 0.5)
    ]
    events: list = []
    members = [PackMember(s, tmp_path / f"t{i}", Log(events, i)) for i, s in enumerate(ss)]
    results = run_pack(
        members,
        tmp_path / "pack",
        cache_dir=cache_dir,
        threads=1,
        checkpoint_every=2,
        epoch_reported=lambda epoch: events.append(("reported", epoch, None)),
    )
    assert [r.status for r in results] == ["succeeded"] * 3
    for epoch in range(1, EPOCHS + 1):
        of_epoch = [e for e in events if e[1] == epoch]
        kinds = [e[0] for e in of_epoch]
        # every member's epoch, then the one call, then (every second epoch) the checkpoints
        assert kinds[:4] == ["epoch"] * 3 + ["reported"], of_epoch
        assert sorted(e[2] for e in of_epoch if e[0] == "epoch") == [0, 1, 2]
        assert kinds[4:] == (["checkpoint"] * 3 if epoch % 2 == 0 else []), of_epoch
    assert [e for e in events if e[0] == "reported"] == [
        ("reported", epoch, None) for epoch in range(1, EPOCHS + 1)
    ]


class Ends(Log):
    """A member's reporter that cancels it after ``cancel_after`` epochs, or stops it after
    ``stop_after`` (as a sweep's early stopping does)."""

    def __init__(self, events: list, i: int, cancel_after=None, stop_after=None):
        super().__init__(events, i)
        self.cancel_after, self.stop_after, self.seen = cancel_after, stop_after, 0

    def on_epoch(self, epoch, metrics):
        super().on_epoch(epoch, metrics)
        self.seen += 1

    def should_cancel(self):
        return self.cancel_after is not None and self.seen >= self.cancel_after

    def should_stop(self):
        return self.stop_after is not None and self.seen >= self.stop_after


def test_a_member_that_ends_before_the_pack_is_reported_then_with_its_result(tmp_path, cache_dir):
    epochs = 6
    train = {"lr": 0.05, "batch_size": 50, "epochs": epochs}
    ss = [
        make_spec(train=train, regularizers=[{"name": "dropout", "p": 0.1}]),  # to the end
        make_spec(train=train, regularizers=[{"name": "dropout", "p": 0.3}]),  # cancelled
        make_spec(train=train, regularizers=[{"name": "l2", "strength": 1e4}]),  # diverges
        make_spec(train=train, regularizers=[{"name": "dropout", "p": 0.5}]),  # stopped
        make_spec(train=train, regularizers=[{"name": "dropout", "p": 0.2}]),  # stopped last
    ]
    events: list = []
    reps = [
        Ends(events, 0),
        Ends(events, 1, cancel_after=2),  # cancelled during epoch 3
        Ends(events, 2),
        Ends(events, 3, stop_after=3),  # an odd epoch: no checkpoint due
        Ends(events, 4, stop_after=epochs),  # ends with the pack: not reported early
    ]
    members = [
        PackMember(s, tmp_path / f"t{i}", r) for i, (s, r) in enumerate(zip(ss, reps, strict=True))
    ]
    ended: dict = {}
    summaries: dict = {}

    def member_ended(i, result):
        assert i not in ended, f"member {i} reported twice"
        ended[i] = result
        summaries[i] = json.loads((tmp_path / f"t{i}" / "summary.json").read_text())
        events.append(("ended", None, i))

    results = run_pack(
        members,
        tmp_path / "pack",
        cache_dir=cache_dir,
        threads=1,
        checkpoint_every=2,
        epoch_reported=lambda epoch: events.append(("reported", epoch, None)),
        member_ended=member_ended,
    )
    assert [r.status for r in results] == [
        "succeeded", "cancelled", "failed", "succeeded", "succeeded",
    ]  # fmt: skip
    assert sorted(ended) == [1, 2, 3]  # not the members that ran to the end
    for i in ended:
        assert ended[i] is results[i]  # the very result the pack returns
        assert summaries[i]["status"] == results[i].status
        assert summaries[i]["epochs_run"] == results[i].epochs_run
    assert "cancelled during epoch 3" in results[1].reason and results[1].epochs_run == 2
    assert "became" in results[2].reason
    assert results[3].epochs_run == 3 and "stopped" in results[3].reason
    assert summaries[1]["reason"] == results[1].reason

    def epoch_of(i):  # the epoch whose "reported" came last before member i's "ended"
        at = events.index(("ended", None, i))
        return max(e[1] for e in events[:at] if e[0] == "reported")

    diverged_at = int(results[2].reason.rsplit(" ", 1)[1])
    assert (epoch_of(1), epoch_of(2), epoch_of(3)) == (3, diverged_at, 3)
    for i in ended:
        at = events.index(("ended", None, i))
        # its final checkpoint (saved the epoch it ends, not only every second epoch) came first
        # (a checkpoint's epoch is the member's epochs run: the cancelled member's is 2, saved
        # at epoch 2 as every member is, and again once it is cancelled in epoch 3)
        mine = [e for e in events[:at] if e[0] == "checkpoint" and e[2] == i]
        assert mine[-1] == ("checkpoint", results[i].epochs_run, i), events
        after = events.index(("reported", epoch_of(i), None))
        assert mine[-1] in events[after:at], events
        if i == 1:
            assert mine == [("checkpoint", 2, 1)] * 2, events
        assert not [e for e in events[at:] if e[2] == i and e[0] != "ended"]  # nothing after


def test_a_member_saved_as_it_ended_after_the_others_last_checkpoint_still_resumes(
    tmp_path, cache_dir
):
    """A member that ends is saved the epoch it ends (before ``member_ended``), maybe after the
    running members' last checkpoint: a crash then still resumes the pack from theirs, the
    ended member as it ended (frozen), its log whole, every point once."""
    from regcore.training.checkpoint import load_checkpoint
    from tests.regcore.ensemble.test_pack_resume import Crash, Recorder, pack, points, specs

    ss = specs()[:4]
    whole_reps = [Recorder(), Recorder(), Recorder(), Recorder(stop_after=3)]
    whole = pack(ss, tmp_path / "w", whole_reps, cache_dir=cache_dir, checkpoint_every=2)
    assert whole[3].epochs_run == 3
    reps = [Recorder(crash_in=4), Recorder(), Recorder(), Recorder(stop_after=3)]
    with pytest.raises(Crash):  # in epoch 4: member 3 saved at 3, the others at 2
        pack(ss, tmp_path / "r", reps, cache_dir=cache_dir, checkpoint_every=2)
    ended = load_checkpoint(tmp_path / "r" / "t3" / "checkpoints", "last", ss[3].spec_hash())
    assert ended is not None and ended.train_state["epoch"] == 3
    assert ended.train_state["status"] == "stopped"
    again = [Recorder(), Recorder(), Recorder(), Recorder(stop_after=3)]
    resumed = pack(ss, tmp_path / "r", again, cache_dir=cache_dir, checkpoint_every=2, resume=True)
    assert all(r.info["resumed"] for r in again), [r.info for r in again]
    assert again[0].info["start_epoch"] == 2 and again[0].epochs[0] == 3
    assert again[3].epochs == [] and again[3].checkpoints == []
    for i in range(4):
        assert (resumed[i].status, resumed[i].reason, resumed[i].epochs_run) == (
            whole[i].status, whole[i].reason, whole[i].epochs_run,
        )  # fmt: skip
        assert resumed[i].metrics["test_loss"] == pytest.approx(
            whole[i].metrics["test_loss"], abs=1e-6
        )
        got, want = points(tmp_path / "r" / f"t{i}"), points(tmp_path / "w" / f"t{i}")
        assert len(got) == len(set(got)) and sorted(got) == sorted(want), i
