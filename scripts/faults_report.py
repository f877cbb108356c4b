"""Write docs/reliability.md from the figures the fault and security tests leave behind.

Inputs (under ``var/reports/`` or ``$REGLAB_REPORTS_DIR``): ``faults-<scenario>.json`` from each
test in tests/faults, ``schemathesis.json`` from tests/security/test_schemathesis.py, and
``faults-junit.xml`` (pytest's ``--junitxml`` of the ``make faults`` run) for pass/fail counts.
A missing input is reported as missing, never filled in.

    python scripts/faults_report.py [--reports DIR] [--out docs/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: scenario file name -> (title, what is broken, what must hold)
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "worker_kills": (
        "Worker SIGKILLed mid-training",
        "20 experiments; the worker's process group SIGKILLed 3 times mid-run, then restarted",
        "all terminal, none lost, no metric point duplicated, one lease holder at a time, "
        "resumed runs equal uninterrupted ones",
    ),
    "poison_run": (
        "A run that kills its worker every time",
        "the worker dies at epoch 1 of one experiment, every attempt; a supervisor restarts it",
        "`failed` after max_attempts with the reason; no further claims; the worker goes on",
    ),
    "redis_restart": (
        "Redis restarted during a submission burst",
        "a private Redis without persistence SIGKILLed after 4 of 12 submissions, down for 4",
        "every 202 reaches a terminal state (lost messages are re-sent by the reconciler)",
    ),
    "postgres_restart": (
        "PostgreSQL restarted during training",
        "a private cluster stopped with `pg_ctl -m immediate` mid-run, restarted after ~6 s",
        "503 JSON while down; recovery without restarts; no acknowledged metric lost",
    ),
    "paused_worker": (
        "Worker paused past its lease",
        "SIGSTOP of the running worker until another took over, then SIGCONT",
        "the other worker finishes it; the woken worker's writes are refused and it stops",
    ),
    "commit_enqueue_crash": (
        "Crash between commit and enqueue",
        "a row committed and never enqueued; a row enqueued but never stamped",
        "both run, exactly once (a duplicate message is refused by the claim)",
    ),
    "checkpoint_cut": (
        "Checkpoint write killed halfway",
        "SIGKILL while uploading the epoch-3 checkpoint's state (half written); local copy cut",
        "no row points at a partial file; resume from the last complete (epoch 2)",
    ),
    "memory_bomb": (
        "Memory bomb and OOM kill beside normal jobs",
        "one worker; a 64-member mlp [7000, 7000] adam job (admission bypassed, 3 GB RLIMIT_AS "
        "per job) and a job whose process is SIGKILLed as by the OOM killer, among 5 normal jobs",
        "only those two fail, at once (1 attempt), with the reason; the same worker process runs "
        "every other job",
    ),
    "store_full": (
        "Artifact store full mid-upload",
        "ENOSPC halfway through copying each checkpoint into the store from epoch 3 on",
        "the run `failed` with the reason (no path), no partial file left, only complete "
        "checkpoints listed; the worker runs the next job",
    ),
    "cancel_stages": (
        "Cancel in every stage",
        "cancel during data generation, training, evaluation, measurements and a checkpoint "
        "upload (the last three stalled 120 s by a hook)",
        "each run `cancelled` within 5 s, its lease cleared; the worker runs the next job",
    ),
    "clock_skew": (
        "Worker clocks 10 minutes off",
        "one worker's wall clock 10 min behind, another's 10 min ahead (a hook offsets "
        "`time.time` and `utcnow` in their processes); the fast one is handed a second message "
        "for the slow one's run, then SIGKILLed mid-run",
        "the slow worker's run is never requeued or taken over; both count as live; the fast "
        "worker's lease ends one lease after it died; its run resumes on the other",
    ),
    "db_read_only": (
        "PostgreSQL read-only mid-run",
        "`ALTER DATABASE ... SET default_transaction_read_only = on` and every connection cut "
        "at epoch 3; writable again after ~6 s (`RESET`, nothing cut)",
        "503 problem+json for writes while read-only, reads answered; the run pauses and "
        "succeeds in its first attempt, every metric point once; no restarts",
    ),
    "db_full": (
        "PostgreSQL's disk full mid-run",
        "the test database in a tablespace on a 64 MB tmpfs; at epoch 3 a filler file takes "
        "every free byte (no table or index can grow: SQLSTATE 53100), deleted after ~8 s",
        "503 problem+json naming a full database for writes it cannot store; the run pauses and "
        "succeeds in its first attempt, every metric point once; no restarts",
    ),
    "broker_loss": (
        "Broker losing every message for a while",
        "for 12 s every message that lands on the private Redis's queues is deleted (the "
        "reconciler's re-sends too; `REGLAB_STALE_QUEUED_SECONDS` 4); the only worker busy",
        "every run whose message was lost is re-sent by the reconciler and runs exactly once",
    ),
    "pack_kill": (
        "A pack's worker SIGKILLed mid-run",
        "a pack of 4 sweep trials (14 epochs, a checkpoint every 5) in one job; its worker's "
        "process group SIGKILLed when every member is between epochs 6 and 9, then a second "
        "worker with its own scratch folder",
        "every member succeeds in its second attempt, resumed as a pack of 4 from its own "
        "epoch-5 checkpoint in the store; every metric at every epoch once; curves and final "
        "val_loss equal to the same pack run uninterrupted (1e-6)",
    ),
    "pack_child": (
        "A pack's process OOM-killed or out of memory",
        "one worker; a pack of 4 whose process is SIGKILLed as by the OOM killer after a "
        "member's epoch, and a pack of four mlp [7000, 7000] adam trials under a 3 GB "
        "RLIMIT_AS per job (admission bypassed)",
        "every member of both packs `failed` at once (1 attempt) with the reason; the pack "
        "trains in a process other than the worker's; the same worker process then runs a "
        "pack and a single run",
    ),
    "pack_cancel": (
        "A pack's members cancelled one by one",
        "a pack of 4 (100 epochs): one member cancelled once all are at epoch 2, the other "
        "three once they are 5 epochs past the epoch it stopped at",
        "the first member's row `cancelled` (its reason, its lease cleared) while the others "
        "train on; after the last cancel every member `cancelled` within 20 s in 1 attempt, "
        "the pack's process ended; the worker runs the next job",
    ),
    "pack_shutdown": (
        "Worker shut down mid-pack",
        "SIGTERM to the worker's process group (fork server included) once every member of a "
        "pack of 4 (100 epochs) has its epoch-5 checkpoint; then a second worker",
        "the worker stops the pack's process, gives every member back `queued` with its "
        "attempt uncounted and exits 0; the second worker resumes the pack from the "
        "checkpoints: all succeed in 1 attempt, every metric at every epoch once",
    ),
}

FIXES = (
    "The API answered 500 while the database was unreachable; it now answers 503 with "
    '`{"error": "not ready", ...}` and `Retry-After` (`service/api/unavailable.py`).',
    "A database error in any of a run's writes ended the worker's task (the run came back only "
    "after its lease expired, as a new attempt); the worker now repeats each short "
    "transaction with backoff for up to the lease (`worker.reporter.retry_db`), so an "
    "outage shorter than that only pauses the run.",
    "Messages a broker forgets (Redis without persistence, restarted) left rows queued for a "
    "fixed 600 s; the delay is now the setting `REGLAB_STALE_QUEUED_SECONDS`.",
    "Workers name their PostgreSQL connections after their worker id (`application_name`), "
    "which the audit above relies on.",
    "A job that ran out of memory took its worker down and the next user's job failed with "
    "`worker error: MemoryError`; each job now runs in a child process of the worker "
    "(`worker/child.py`, forked from a fork server that preloaded torch and regcore), so a "
    "MemoryError or an OOM kill ends that job alone, recorded `failed` with the reason and not "
    "retried; specs estimated above a worker's memory are refused at submit "
    "(`regcore/memory_estimate.py`, `service/admission.py`, 422 naming the fields).",
    "A cancel during data generation (an unbounded `pretrain.generator.padding`) was ignored "
    "for over 400 s while the lease kept being renewed; generator settings are bounded now, "
    "and the worker kills a job that has not stopped within `REGLAB_CANCEL_GRACE_SECONDS` of a "
    "cancel, a lost lease or a shutdown, whatever stage it is in.",
    "Lease times were each worker's wall clock: a worker 10 minutes slow wrote leases already "
    "expired (the reconciler requeued its run within a second of the claim), one 10 minutes "
    "fast took over live leases and held dead ones 10 minutes too long. Every lease and "
    "liveness time is now the database's clock, computed in the statement "
    "(`service.db.clock.db_now`: `now()` on PostgreSQL, `strftime('now')` in the stored text "
    "form on SQLite) in `claim`, `heartbeat`, the epoch write's renewal, `requeue_expired`, "
    "`settle_unclaimable` and `worker_heartbeats`.",
    "A write to a read-only database (SQLSTATE 25006) read as a bad statement (so the job "
    "would end with `worker error`, the API answer 500). It is an outage now "
    "(`service.db.outage`): the engine replaces the connection that met it (a connection "
    "opened while the database was read-only stays read-only), `retry_db` waits it out, the "
    "API answers 503 `the database is read-only; retry shortly` with Retry-After.",
    "A full database disk (SQLSTATE 53100, which psycopg raises as an `OperationalError`) was "
    "already waited out like an unreachable database, but every message said `the database is "
    "unreachable`; they now say what it is (`service.db.outage.describe`: the API's 503 reads "
    "`the database is full; retry shortly`, the worker logs `database full while ...`).",
    "A job stopped by its worker for a cancel, before the job's own poll had read the cancel, "
    "reported what a shutdown reports: the run was released (its attempt uncounted, logged "
    "`back in the queue: the worker is shutting down`) instead of ended; the supervisor now "
    "knows it passed a cancel on (`worker/child.py`; seen as attempts 0 in the clock test).",
    "A pack of sweep trials (one job training several trials as one batched model) ran in the "
    "worker's own process: a pack that ran out of memory took its worker down, a cancel of "
    "every member or a shutdown could not kill it, and admission judged each trial alone "
    "while a pack of 16-64 holds them all. A pack now runs in a child process as a single run "
    "does (`worker/child.py` runs either; the worker keeps each member's lease and records "
    "each member's outcome): a `MemoryError` in it or its process killed by the OOM killer "
    "fails its members with that reason, not retried, and the worker goes on "
    "(`tests/faults/test_pack_child.py`); it is killed after `REGLAB_CANCEL_GRACE_SECONDS` "
    "only when every member must stop (each member's cancel stays its own), and with "
    "`REGLAB_WORKER_MEMORY_BYTES` set a pack is cut where the members' summed estimate would "
    "pass it (docs/sweeps.md, Packing).",
    "A SIGTERM to the worker's whole process group (as `kill -TERM -pgid` or systemd's "
    "default stop send) also killed the fork server its job processes come from, and the "
    "worker then read the running job's exit status as 255 (the fork server reports its "
    "children's): the job, single run or pack, ended `failed: worker error: the job's process "
    "exited with code 255` instead of going back to the queue. The fork server now ignores "
    "SIGTERM (`worker/forkserver_signals.py`, its first preload: blocking the signal while "
    "it starts did not carry over, Python's fork-exec unblocks every signal; it still ends "
    "with its worker), and a job process that ends without an outcome while the worker is shutting "
    "down is given back to the queue (`tests/faults/test_pack_shutdown.py`: the members go "
    "back, uncounted, and another worker resumes the pack from epoch 5).",
)

#: faults named in issue 16 that no test here breaks yet, and what is known about them
OPEN = (
    "A broker that loses messages needed no change: the reconciler re-sends a queued run whose "
    "message is older than `REGLAB_STALE_QUEUED_SECONDS` (600 s by default, so after a minute "
    "of loss a run can wait up to 10 minutes; lower it where queues are short), and a second "
    "copy of a message is refused by the claim.",
    "Lease times use the database's clock; `created_at` and `enqueued_at` (which "
    "`stale_queued` compares) are still stamped by the API process that wrote them, and "
    "compared by the reconciler in `reglab serve`, the same process: an API replica whose clock "
    "is off would delay or hasten its own re-sends, not touch a lease.",
    "On SQLite `REGLAB_WORKER_ISOLATION=auto` runs each job in the worker's own process: a "
    "child would be a second process writing the same database file, and the two contend for "
    "SQLite's one write lock (a 100-epoch run took over 90 s instead of 53 s). There a job that "
    "runs out of memory can take the worker down with it; `process` forces children (slower), "
    "PostgreSQL gets them by default. None of the scenarios above runs on SQLite.",
    "The database full is tested for its tables and indexes (a tablespace on a small "
    "filesystem); a full WAL disk makes PostgreSQL itself stop (a PANIC and a restart), which "
    "the PostgreSQL restart scenario covers from the client's side.",
)

COLUMNS = ("experiments", "kills", "restarts", "lost", "duplicated")


def _restarts(fig: dict[str, Any]) -> int:
    return sum(int(fig.get(k) or 0) for k in ("restarts", "redis_restarts", "postgres_restarts"))


def _duplicated(fig: dict[str, Any]) -> int | str:
    value = fig.get("duplicated_metric_points")
    return "–" if value is None else int(value)


def _details(name: str, fig: dict[str, Any]) -> str:
    keys = {
        "worker_kills": ("succeeded", "resumed", "resumed_matching_uninterrupted", "claims",
                         "lease_violations"),
        "poison_run": ("status", "attempts", "claims", "next_experiment", "error"),
        "redis_restart": ("accepted", "refused", "server_errors_5xx", "resent_by_reconciler",
                          "succeeded"),
        "postgres_restart": ("outage_s", "requests_while_down", "answered_503",
                             "server_errors_other_than_503", "acknowledged_metric_points",
                             "worker_db_retry_episodes", "attempts"),
        "paused_worker": ("paused_at_epoch", "writers", "writes_by_paused_worker_after_takeover",
                          "lease_violations", "attempts"),
        "commit_enqueue_crash": ("succeeded", "runs", "duplicate_messages_refused"),
        "checkpoint_cut": ("partial_files_left", "last_recorded_at_kill", "resumed_from_epoch",
                           "bad_checkpoint_references"),
        "memory_bomb": ("normal_succeeded", "collateral_failures", "bomb_attempts", "bomb_error",
                        "oom_killed_attempts", "oom_killed_error", "worker_replaced",
                        "lease_violations"),
        "store_full": ("status", "attempts", "error", "checkpoints_listed",
                       "newest_listed_epoch", "partial_files_left", "bad_checkpoint_references",
                       "next_job"),
        "cancel_stages": ("seconds_to_cancelled", "slowest_s", "bound_s", "next_job",
                          "worker_replaced", "lease_violations"),
        "clock_skew": ("clock_offsets_s", "live_consumers_seen", "slow_worker_run_epochs",
                       "slow_worker_run_claims", "slow_worker_run_requeued_while_running",
                       "duplicates_refused_by_fast_worker", "fast_worker_killed_lease_ended_s",
                       "lease_s", "fast_worker_run_status", "fast_worker_run_attempts",
                       "lease_violations"),
        "db_read_only": ("read_only_s", "writes_while_read_only", "answered_503",
                         "server_errors_other_than_503", "reads_answered_200",
                         "worker_read_only_retry_episodes", "status", "attempts",
                         "acknowledged_metric_points", "writes_after_until_accepted",
                         "next_job"),
        "db_full": ("full_s", "writes_while_full", "answered_503", "answered_202",
                    "server_errors_other_than_503", "worker_full_retry_episodes", "status",
                    "attempts", "acknowledged_metric_points"),
        "broker_loss": ("window_s", "stale_queued_s", "messages_dropped", "resends_dropped",
                        "runs_whose_message_was_lost", "resent_by_reconciler",
                        "duplicate_messages_refused", "seconds_to_all_finished_after_window",
                        "succeeded", "runs", "lease_violations"),
        "pack_kill": ("members", "at_kill", "checkpoint_at_kill", "resumed_from", "attempts",
                      "resumed_pack_sizes", "resumed_matching_uninterrupted",
                      "lease_violations"),
        "pack_child": ("doomed_attempts", "doomed_error", "bomb_attempts", "bomb_error",
                       "pack_process_kills", "pack_processes", "worker_pid",
                       "worker_pid_unchanged", "next_jobs_succeeded", "lease_violations"),
        "pack_cancel": ("victim_settled_s", "cancelled_at", "all_stopped_s", "attempts",
                        "next_job", "worker_replaced", "lease_violations"),
        "pack_shutdown": ("epochs_at_stop", "worker_stopped_s", "worker_exit_code",
                          "members_given_back", "resumed_from", "attempts", "lease_violations"),
    }.get(name, ())  # fmt: skip
    return "; ".join(f"{k.replace('_', ' ')}: {fig[k]}" for k in keys if k in fig)


def _junit(path: Path) -> tuple[dict[str, Counter[str]], float] | None:
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    total_time = 0.0
    for suite in root.iter("testsuite"):
        total_time += float(suite.get("time", 0))
    for case in root.iter("testcase"):
        module = (case.get("classname") or "").rsplit(".", 1)
        name = module[0] if len(module) > 1 and module[1][:1].isupper() else case.get("classname")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        per_file[(name or "?").replace(".", "/") + ".py"][outcome] += 1
    return per_file, total_time


def build(reports: Path) -> str:
    figures = {
        p.stem.removeprefix("faults-"): json.loads(p.read_text())
        for p in sorted(reports.glob("faults-*.json"))
    }
    schemathesis = reports / "schemathesis.json"
    fuzz = json.loads(schemathesis.read_text()) if schemathesis.is_file() else None
    junit = _junit(reports / "faults-junit.xml")

    out = [
        "# Reliability",
        "",
        "Generated by `make faults` (`scripts/faults_report.py`, from the figures the tests in "
        "`tests/faults/` and `tests/security/` leave in `var/reports/`); do not edit by hand. "
        f"Last generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "Every fault test runs the real parts: `reglab serve` (API + reconciler), `reglab "
        "worker` subprocesses, PostgreSQL and Redis, with 4 s leases (30 s in the PostgreSQL "
        "restart and read-only scenarios) and a 1 s reconciler. Redis is a private "
        "`redis-server` per test, PostgreSQL a fresh database (a private `initdb` cluster for "
        "the restart), so nothing shared is disturbed. Who wrote what is taken from the "
        "database: triggers in the test databases record each write to an experiment, metric or"
        " checkpoint row with the writing connection's `application_name` (a worker names its "
        "connections after its id) and the lease owner the writing transaction saw.",
        "",
    ]
    totals: Counter[str] = Counter()
    for fig in figures.values():
        totals["experiments"] += int(fig.get("experiments") or 0)
        totals["kills"] += int(fig.get("kills") or 0)
        totals["restarts"] += _restarts(fig)
        totals["lost"] += int(fig.get("lost") or 0)
        dup = _duplicated(fig)
        totals["duplicated"] += dup if isinstance(dup, int) else 0
    passed = sum(1 for f in figures.values() if f.get("outcome") == "passed")
    out += [
        "## Summary",
        "",
        "| figure | value |",
        "|---|---|",
        f"| fault scenarios passed | {passed} of {len(figures)} run ({len(SCENARIOS)} defined) |",
        f"| experiments submitted under faults | {totals['experiments']} |",
        f"| worker kills (SIGKILL) | {totals['kills']} |",
        f"| restarts (workers, Redis, PostgreSQL) | {totals['restarts']} |",
        f"| experiments lost | {totals['lost']} |",
        f"| metric points duplicated | {totals['duplicated']} |",
    ]
    if fuzz is not None:
        out += [
            f"| schemathesis requests sent | {fuzz.get('requests_sent')} |",
            f"| 5xx answers seen by schemathesis | {fuzz.get('server_errors_5xx')} |",
        ]
    else:
        out.append("| schemathesis | no figures (var/reports/schemathesis.json missing) |")
    out += ["", "## Fault scenarios", ""]
    out += [
        "| scenario | fault | must hold | outcome | " + " | ".join(COLUMNS) + " | wall s |",
        "|---|---|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for name, (title, fault, holds) in SCENARIOS.items():
        fig = figures.get(name)
        if fig is None:
            out.append(f"| {title} | {fault} | {holds} | not run |" + " – |" * (len(COLUMNS) + 1))
            continue
        cells = [
            fig.get("experiments", "–"),
            fig.get("kills", 0),
            _restarts(fig),
            fig.get("lost", "–"),
            _duplicated(fig),
        ]
        out.append(
            f"| {title} | {fault} | {holds} | **{fig.get('outcome')}** | "
            + " | ".join(str(c) for c in cells)
            + f" | {fig.get('wall_s', '–')} |"
        )
    out += ["", "Details per scenario:", ""]
    ordered = [n for n in SCENARIOS if n in figures] + [n for n in figures if n not in SCENARIOS]
    for name in ordered:
        fig = figures[name]
        title = SCENARIOS.get(name, (name, "", ""))[0]
        out.append(f"- **{title}** (`tests/faults/test_{name}.py`): {_details(name, fig)}")
    out += ["", "What the fault tests led to in the code:", ""]
    out += [f"- {line}" for line in FIXES]
    out += ["", "Open:", ""]
    out += [f"- {line}" for line in OPEN]
    out += ["", "## Bad input, access and the API's schema", ""]
    if fuzz is not None:
        out += [
            f"schemathesis (`tests/security/test_schemathesis.py`, in process, "
            f"{fuzz.get('seed')}, {fuzz.get('examples_per_operation')} examples per operation) "
            f"sent **{fuzz.get('requests_sent')}** requests and saw "
            f"**{fuzz.get('server_errors_5xx')}** 5xx answers; every response was checked "
            "against the OpenAPI document.",
            "",
            "| operation | requests |",
            "|---|---|",
        ]
        per_op = fuzz.get("per_operation") or {}
        probes = {op: n for op, n in per_op.items() if n <= 3}
        out += [f"| `{op}` | {n} |" for op, n in per_op.items() if op not in probes]
        if probes:
            out.append(
                f"| {len(probes)} other method/path pairs (undocumented methods, parameterless "
                f"routes) | {sum(probes.values())} |"
            )
        out.append("")
    if junit is not None:
        per_file, total_time = junit
        out += [
            f"Tests run by `make faults` ({total_time:.0f} s in all):",
            "",
            "| file | passed | failed | skipped |",
            "|---|---|---|---|",
        ]
        for file, counts in sorted(per_file.items()):
            out.append(
                f"| `{file}` | {counts['passed']} | {counts['failed']} | {counts['skipped']} |"
            )
        out.append("")
    else:
        out += ["(no `faults-junit.xml`: run `make faults` for the per-file test counts)", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_reports = Path(os.environ.get("REGLAB_REPORTS_DIR", ROOT / "var" / "reports"))
    parser.add_argument("--reports", type=Path, default=default_reports)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    args.out.write_text(build(args.reports) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
