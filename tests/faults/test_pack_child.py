"""A pack in a child process of its worker (``worker.child`` running ``worker.packs``), with
PostgreSQL, a private Redis and a real ``reglab worker``: the pack trains in a process that is not
the worker's; a pack's process killed by the OOM killer (a hook SIGKILLs it, as the kernel would)
fails every member at once, not retried, and so does a pack that meets its process's memory cap
(``REGLAB_JOB_MEMORY_LIMIT_BYTES``); the worker goes on to the next jobs (cancels:
test_pack_cancel.py, shutdown: test_pack_shutdown.py)."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def sweep(name: str, epochs: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base": tiny_spec(epochs=epochs, name=name, **kw),
        "space": {"regularizers[0].strength": [0.0, 1e-2], "train.lr": [0.05, 0.02]},
        "max_concurrent": 4,
        "metric": "val_acc",
    }


def ids_of(created: dict[str, Any]) -> list[str]:
    return [e["experiment_id"] for e in created["experiments"]]


def pack_pids(api: Any, eid: str) -> list[tuple[int, int]]:
    """(worker's pid, pack's process pid) of each 'pack of N on W (process P)' line of a run's
    log, which the pack's process writes (``worker.packs.PackRun``; the worker's id is
    host:pid:suffix)."""
    said = re.compile(r"pack of \d+ on [^:\s]+:(\d+):\S+ \(process (\d+)\)")
    found = (said.search(x["message"]) for x in api.logs(eid)["items"])
    return [(int(m.group(1)), int(m.group(2))) for m in found if m]


def started_pids(api: Any, eid: str) -> list[int]:
    """The pids in the worker's 'pack of N (...): pack process P started' lines of a run's log
    (``worker.child.ChildRunner``: they are kept even when the pack's process is killed)."""
    said = re.compile(r"pack of \d+ \(.*\): pack process (\d+) started")
    found = (said.search(x["message"]) for x in api.logs(eid)["items"])
    return [int(m.group(1)) for m in found if m]


def test_a_pack_runs_in_its_own_process_and_an_oom_kill_of_it_fails_its_members_alone(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, tmp_path: Path,
    figures: dict,
):  # fmt: skip
    # admission bypassed (workers "hold" a petabyte, so packs are not cut either) and each job's
    # process capped at 3 GB of address space, as in test_memory_bomb.py
    stack = stack_factory(
        new_postgres_database(), private_redis.url,
        worker_memory_bytes=str(10**15), job_memory_limit_bytes=str(3 * 10**9),
    )  # fmt: skip
    api = stack.start_api()
    oom_file = tmp_path / "oom"
    oom_file.write_text("")
    worker = stack.start_worker(hooks={"REGLAB_FAULT_OOM_FILE": str(oom_file)})
    pid = worker.popen.pid
    doomed = ids_of(api.create_sweep(sweep("doomed", epochs=6)))
    oom_file.write_text(doomed[1])  # its pack's process dies after that member's next epoch
    doomed_rows = stack.wait_terminal(doomed, timeout=120)
    for eid in doomed:
        row = doomed_rows[eid]
        assert row["status"] == "failed" and row["attempts"] == 1, row
        assert row["error"].startswith("the pack's process (4 members) was killed by SIGKILL"), row
        assert "out-of-memory killer" in row["error"], row
        assert "the pack was estimated at" in row["error"], row
    # a pack that meets its process's memory cap: four mlp [7000, 7000] under adam (~4 GB of
    # weights and state together) fail at once with the allocator's refusal
    bomb_body = sweep("bomb", epochs=2)
    bomb_body["base"]["model"] = {"name": "mlp", "hidden": [7000, 7000]}
    bomb_body["base"]["train"]["optimizer"] = "adam"
    bomb = ids_of(api.create_sweep(bomb_body))
    bomb_rows = stack.wait_terminal(bomb, timeout=120)
    for eid in bomb:
        row = bomb_rows[eid]
        assert row["status"] == "failed" and row["attempts"] == 1, row
        assert "memory" in row["error"].lower(), row
    # the worker lives on and takes the next jobs: a pack and a single run
    fine = ids_of(api.create_sweep(sweep("fine", epochs=2)))
    after = api.submit(tiny_spec(seed=5, epochs=2, name="after"))["id"]
    rows = stack.wait_terminal([*fine, after], timeout=120)
    out = worker.output()
    expected = {
        **dict.fromkeys([*doomed, *bomb], "failed"),
        **dict.fromkeys([*fine, after], "succeeded"),
    }
    figures.update(
        experiments=len(rows),
        kills=sum(w.popen.returncode == -signal.SIGKILL for w in stack.workers),
        restarts=len(stack.workers) - 1,
        lost=sum(rows[i]["status"] != want for i, want in expected.items()),
        duplicated_metric_points=stack.duplicated_metric_points(),
        pack_process_kills=out.count("fault injection: SIGKILL of the job's process"),
        doomed_attempts=[doomed_rows[i]["attempts"] for i in doomed],
        bomb_attempts=[bomb_rows[i]["attempts"] for i in bomb],
        next_jobs_succeeded=sum(rows[i]["status"] == "succeeded" for i in [*fine, after]),
        worker_pid_unchanged=worker.popen.poll() is None and worker.popen.pid == pid,
        lease_violations=len(stack.audit().violations()),
    )
    assert all(rows[i]["status"] == "succeeded" for i in [*fine, after]), (rows, stack.logs())
    assert worker.popen.poll() is None and worker.popen.pid == pid
    assert "fault injection: SIGKILL of the job's process" in out
    [(worker_pid, fine_pid)] = pack_pids(api, fine[0])  # the pack's process says so itself
    assert fine_pid != worker_pid
    for eid in fine:
        assert pack_pids(api, eid) == [(worker_pid, fine_pid)] and started_pids(api, eid) == [
            fine_pid
        ]
    # the killed pack's process: the worker's line (its own lines died with it unflushed)
    [doomed_pid] = started_pids(api, doomed[0])
    assert doomed_pid not in (worker_pid, fine_pid)
    assert all(started_pids(api, eid) == [doomed_pid] for eid in doomed)
    children = [doomed_pid, fine_pid]
    figures.update(
        doomed_error=doomed_rows[doomed[0]]["error"],
        bomb_error=bomb_rows[bomb[0]]["error"][:300],
        worker_pid=worker_pid,
        pack_processes=children,
    )
