"""Upgrade a database to the newest Alembic revision (for serve, worker and tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


class MigrationError(RuntimeError):
    """The database could not be brought to the current schema."""


def alembic_config(url: str) -> Config:
    ini = ROOT / "alembic.ini"
    if not ini.exists():
        raise MigrationError(f"alembic.ini not found at {ini}; run from a source checkout")
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
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
