"""A pack reports each epoch of all its members before anything else of that epoch happens:
``epoch_reported`` comes once an epoch, after every member's ``on_epoch`` and before any of
that epoch's checkpoints (so a reporter may hold its points and write the pack's epoch once)."""

from __future__ import annotations

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
