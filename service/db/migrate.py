"""Upgrade a database to the newest Alembic revision (for serve, worker and tests).

The Alembic configuration is built here, not read from ``alembic.ini``: the migrations are the
``migrations`` package of the installed distribution, so a regular (non-editable) install, as in
the Docker images, finds them. ``alembic.ini`` at the repository root is for the ``alembic``
command in a source checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url


class MigrationError(RuntimeError):
    """The database could not be brought to the current schema."""


def script_location() -> Path:
    """The folder of the installed ``migrations`` package (env.py, script.py.mako, versions/)."""
    # find_spec, not import: the package's __init__ is empty, but env.py must only run under
    # Alembic.
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.submodule_search_locations:
        for folder in map(Path, spec.submodule_search_locations):
            if (folder / "env.py").is_file() and (folder / "versions").is_dir():
                return folder
    raise MigrationError("the migrations package is not installed (reinstall reglab)")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("path_separator", "os")
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_to_head(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        command.upgrade(alembic_config(url), "head")
    except Exception as exc:  # noqa: BLE001 - surfaced as one clear message
        safe = parsed.render_as_string(hide_password=True)
        raise MigrationError(f"could not migrate {safe} to the current schema: {exc}") from exc


def check(url: str) -> None:
    """Raise if the models differ from the migrations (``alembic check``)."""
    command.check(alembic_config(url))
