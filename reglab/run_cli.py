"""``reglab run`` and ``reglab catalog``: train locally, with no server.

These use the core (regcore) alone: no service, no database, no broker. The core and rich are
imported inside the commands, so ``reglab --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reglab.common import fail as _fail

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import Progress

    from regcore.spec import ExperimentSpec

DEFAULT_CACHE = Path.home() / ".cache" / "reglab"


def load_spec_file(path: Path) -> ExperimentSpec:
    """Read and validate a spec file; exit 2 with field paths on any problem."""
    from regcore.spec import SpecError, parse_spec

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        _fail(f"spec file not found: {path}", 2)
    except json.JSONDecodeError as err:
        _fail(f"{path} is not valid JSON: {err}", 2)
    try:
        return parse_spec(data, local=True)  # local paths: data.name file, tie.reference
    except SpecError as err:
        lines = "\n".join(f"  {e['field']}: {e['message']}" for e in err.errors)
        _fail(f"invalid spec {path}:\n{lines}", 2)


def _check_memory(spec: ExperimentSpec) -> None:
    """Exit 2 when the spec's estimated peak memory exceeds REGLAB_WORKER_MEMORY_BYTES (default
    80% of this machine's), naming the fields that drive it (regcore.memory_estimate)."""
    from regcore.memory_estimate import check, worker_memory_limit

    try:
        errors = check(spec, worker_memory_limit(os.environ))
    except ValueError as err:
        _fail(str(err), 2)
    if errors:
        lines = "\n".join(f"  {e['field']}: {e['message']}" for e in errors)
        _fail(f"the spec needs more memory than this machine has:\n{lines}", 2)


def console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def progress_bar() -> Progress:
    """Epochs done, elapsed time and the latest losses, on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console(),
    )


class ProgressReporter:
    """Shows a progress bar over epochs with the latest losses."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task: Any = None

    def on_start(self, info: dict[str, Any]) -> None:
        self.task = self.progress.add_task(
            "training", total=info["epochs"], completed=info["start_epoch"], status=""
        )
        if info["resumed"]:
            self.progress.console.print(f"resumed from epoch {info['start_epoch']}")

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        keys = [k for k in ("train_loss", "val_loss", "val_acc") if k in metrics]
        status = "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)
        self.progress.update(self.task, completed=epoch, status=status)

    def on_checkpoint(self, info: Any) -> None:
        pass

    def should_cancel(self) -> bool:
        return False


def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.json", help="experiment spec (JSON)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path(
        "runs/latest"
    ),
    device: Annotated[
        str | None, typer.Option(help="override train.device: auto, cpu, cuda, cuda:N")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: 1 for small models)")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoints/last")] = False,
    force: Annotated[bool, typer.Option(help="overwrite a finished run in OUT")] = False,
    cache_dir: Annotated[
        Path, typer.Option(help="where generated datasets are cached")
    ] = DEFAULT_CACHE,
    checkpoint_every: Annotated[
        int, typer.Option(help="epochs between 'last' checkpoints (0: never)")
    ] = 1,
) -> None:
    """Train SPEC.json locally; write OUT/summary.json, OUT/metrics.jsonl and OUT/checkpoints/."""
    from regcore.spec import SpecError, parse_spec

    spec = load_spec_file(spec_path)
    if device is not None:
        try:
            spec = parse_spec(
                {
                    **spec.model_dump(mode="json"),
                    "train": {**spec.train.model_dump(mode="json"), "device": device},
                },
                local=True,
            )
        except SpecError as err:
            _fail(str(err), 2)
    _check_memory(spec)  # what this machine cannot hold fails now, not out of memory later
    if (out / "summary.json").exists() and not (resume or force):
        _fail(f"{out} already holds a finished run; pass --force to overwrite or --resume", 2)
    if force and out.exists() and not resume:
        shutil.rmtree(out)
    try:
        from regcore.experiment import run as run_experiment
        from regcore.training.device import DeviceUnavailable
    except ImportError as err:
        _fail(f"training needs the worker extra ({err}): pip install 'reglab[worker]'", 2)

    progress = progress_bar()
    try:
        with progress:
            result = run_experiment(
                spec,
                workdir=out,
                device=device,
                reporter=ProgressReporter(progress),
                cache_dir=cache_dir,
                threads=threads,
                resume=resume,
                checkpoint_every=checkpoint_every,
                system_metrics=True,
            )
    except DeviceUnavailable as err:
        _fail(str(err), 2)
    print_summary(result.summary())
    console().print(f"wrote {out}/summary.json, metrics.jsonl, checkpoints/")
    if result.status != "succeeded":
        _fail(f"run {result.status}: {result.reason}", code=1)


def print_summary(summary: dict[str, Any]) -> None:
    from reglab.output import Col, table

    title = f"{summary['status']}: {summary['epochs_run']} epochs, best {summary['best_epoch']}"
    rows = [(k, f"{v:.4f}") for k, v in summary["metrics"].items()]
    table(["metric", Col("value", right=True)], rows, title=title)


def catalog(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print every regularizer with its parameters and their defaults."""
    from regcore.catalog import catalog_entries
    from reglab.output import table

    entries = catalog_entries()
    if as_json:
        sys.stdout.write(json.dumps(entries, indent=2, default=str) + "\n")
        return
    rows = [
        (e["name"], ", ".join(f"{k}={v}" for k, v in e["defaults"].items()), e["description"])
        for e in entries
    ]
    table(["name", "parameters (defaults)", "description"], rows, title="RegLab regularizers")
