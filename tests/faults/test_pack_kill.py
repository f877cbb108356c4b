"""A pack's worker SIGKILLed mid-run: another worker (its own scratch folder, nothing on disk
from the first) claims the requeued members as a pack and resumes it from the members' own
checkpoints in the artifact store; every trial ends with each metric at each epoch once."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from regcore.ensemble.pack import PackMember, run_pack
from regcore.spec import parse_spec
from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

EPOCHS = 14
EVERY = 5  # worker.packs.PACK_CHECKPOINT_EVERY


def resumed_from(log_lines: list[dict], eid: str) -> list[int]:
    said = re.compile(rf"experiment {eid}: resuming from epoch (\d+)")  # a pack's log: all
    return [int(m.group(1)) for x in log_lines if (m := said.search(x["message"]))]


def test_a_killed_pack_is_resumed_by_another_worker_from_its_members_checkpoints(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, tmp_path: Path,
    cache_dir: Path, figures: dict,
):  # fmt: skip
    from worker.packs import PACK_CHECKPOINT_EVERY

    assert PACK_CHECKPOINT_EVERY == EVERY
    stack = stack_factory(new_postgres_database(), private_redis.url, max_attempts=3)
    api = stack.start_api()
    # 200 steps an epoch: the kill lands between two checkpoints, well before the end
    base = tiny_spec(epochs=EPOCHS, n_train=1000, batch_size=5, name="pack-kill")
    body = {
        "name": "pack-kill",
        "base": base,
        "space": {"regularizers[0].strength": [0.0, 1e-2], "train.lr": [0.05, 0.02]},
        "max_concurrent": 4,
        "metric": "val_acc",
    }
    created = api.create_sweep(body)
    ids = [e["experiment_id"] for e in created["experiments"]]
    worker = stack.start_worker()

    def past_a_checkpoint() -> bool:
        rows = stack.experiments()
        done = stack.query(
            "SELECT experiment_id FROM checkpoints WHERE kind = 'last' AND epoch >= :e", e=EVERY
        )
        return len({r["experiment_id"] for r in done} & set(ids)) == len(ids) and all(
            EVERY < rows[i]["last_epoch"] < 2 * EVERY for i in ids
        )

    stack.wait_until(past_a_checkpoint, 120, "every member past its first checkpoint")
    worker.kill()
    at_kill = [stack.experiments()[i]["last_epoch"] for i in ids]
    recorded = {
        r["experiment_id"]: r["e"]
        for r in stack.query(
            "SELECT experiment_id, max(epoch) AS e FROM checkpoints WHERE kind = 'last' "
            "GROUP BY experiment_id"
        )
    }
    second = stack.start_worker()  # another scratch folder: only the store has the checkpoints
    rows = stack.wait_terminal(ids, timeout=180)
    duplicated = stack.duplicated_metric_points()
    figures.update(
        experiments=len(stack.experiments()),
        members=len(ids),
        kills=sum(w.popen.returncode == -signal.SIGKILL for w in stack.workers),
        restarts=len(stack.workers) - 1,
        lost=sum(rows[i]["status"] != "succeeded" for i in ids),
        duplicated_metric_points=duplicated,
        at_kill=at_kill,
        checkpoint_at_kill=[recorded.get(i) for i in ids],
        attempts=[rows[i]["attempts"] for i in ids],
        lease_violations=len(stack.audit().violations()),
    )
    assert all(rows[i]["status"] == "succeeded" for i in ids), (rows, stack.logs())
    assert all(rows[i]["attempts"] == 2 for i in ids), rows
    assert duplicated == 0
    # the uninterrupted pack, here: the resumed one must end on the same curves
    specs = [parse_spec(api.get(i)["spec"]) for i in ids]
    whole = run_pack(
        [PackMember(s, tmp_path / f"ref{n}") for n, s in enumerate(specs)],
        tmp_path / "ref",
        cache_dir=cache_dir,
        threads=1,
        checkpoint_every=0,
    )
    starts: list[int] = []  # filled as each member is checked, so a failure still shows them
    figures.update(resumed_from=starts, resumed_matching_uninterrupted=0)
    for n, eid in enumerate(ids):
        (start,) = resumed_from(api.logs(eid)["items"], eid)
        starts.append(start)
        assert start == recorded[eid] == EVERY, (start, recorded[eid])
        series = stack.metric_series(eid)
        assert {k: [s for s, _ in v] for k, v in series.items()} == {
            k: list(range(1, EPOCHS + 1)) for k in series
        }, eid
        lines = (tmp_path / f"ref{n}" / "metrics.jsonl").read_text().splitlines()
        ref = [(p["step"], p["value"]) for p in map(json.loads, lines) if p["key"] == "val_loss"]
        assert [s for s, _ in series["val_loss"]] == [s for s, _ in ref]
        assert [v for _, v in series["val_loss"]] == pytest.approx([v for _, v in ref], abs=1e-6)
        assert rows[eid]["summary"]["metrics"]["val_loss"] == pytest.approx(
            whole[n].metrics["val_loss"], abs=1e-6
        )
        figures["resumed_matching_uninterrupted"] += 1
    out = second.output()
    figures["resumed_pack_sizes"] = sorted({int(n) for n in re.findall(r"pack of (\d+)", out)})
    assert "starts over" not in out, out[-3000:]
    assert "pack of 4" in out, "the requeued members went out as a pack again"
