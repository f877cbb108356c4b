"""``reglab``: every command, in one place.

Local (the core alone): ``run``, ``catalog``. Through the API (``reglab.client``): ``submit``,
``ls``, ``show``, ``cancel``, ``metrics``, ``checkpoints``, ``download``, ``export``, ``sweep``,
``sweeps ls|show``, ``compare``. Operating the service: ``serve``, ``worker``, ``reconcile``,
``keys``.

Each command's module imports only typer at the top; the core, the service and rich load inside
the command that needs them, so ``reglab --help`` stays fast (tests/cli/test_startup.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from reglab import experiments_cli, export_cli, logs_cli, run_cli, server_cli, submit_cli, sweep_cli
from reglab.datasets_cli import datasets
from reglab.keys_cli import keys
from reglab.reproduce_cli import reproduce
from reglab.sweep_cli import sweeps

app = typer.Typer(
    help="RegLab: regularization experiments, locally or through the REST service.",
    no_args_is_help=True,
)


def _version(value: bool) -> None:
    if value:
        from reglab import __version__

        print(f"reglab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """RegLab: regularization experiments, locally or through the REST service."""


# --- local: the core alone
app.command()(run_cli.run)
app.command()(run_cli.catalog)
# --- through the API
app.command()(submit_cli.submit)
app.command()(experiments_cli.ls)
app.command()(experiments_cli.show)
app.command()(experiments_cli.cancel)
app.command()(experiments_cli.metrics)
app.command()(experiments_cli.checkpoints)
app.command()(experiments_cli.download)
app.command()(export_cli.export)
app.command()(sweep_cli.sweep)
app.add_typer(sweeps, name="sweeps")
app.command()(sweep_cli.compare)
# --- other engineers' command groups register here, one line each:
app.add_typer(datasets, name="datasets")
app.command()(logs_cli.logs)
app.command()(reproduce)
# --- operating the service
app.command()(server_cli.serve)
app.command()(server_cli.worker)
app.command()(server_cli.reconcile)
app.add_typer(keys, name="keys")

if __name__ == "__main__":
    app()
