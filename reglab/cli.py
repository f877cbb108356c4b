"""``reglab``: run, catalog (the core), serve, worker, submit (the service)."""

from __future__ import annotations

import typer

from regcore.cli import catalog, run
from service.keys_cli import keys
from service.submit_cli import submit
from service.sweep_cli import compare, sweep
from worker.cli import reconcile, serve, worker

app = typer.Typer(
    help="RegLab: regularization experiments, locally or through the REST service.",
    no_args_is_help=True,
)
app.command()(run)
app.command()(catalog)
app.command()(submit)
app.command()(sweep)
app.command()(compare)
app.command()(serve)
app.command()(worker)
app.command()(reconcile)
app.add_typer(keys, name="keys")
if __name__ == "__main__":
    app()
