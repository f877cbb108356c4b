"""The docs say what the code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_catalog_doc_matches_the_spec_models():
    sys.path.insert(0, str(ROOT))
    from scripts.gen_catalog_doc import render

    assert (ROOT / "docs" / "catalog.md").read_text() == render(), (
        "docs/catalog.md is stale: run python scripts/gen_catalog_doc.py"
    )


def test_readme_catalog_table_matches_the_spec_models():
    sys.path.insert(0, str(ROOT))
    from scripts.gen_catalog_doc import render_readme

    readme = (ROOT / "README.md").read_text()
    assert "<!-- catalog:start -->" in readme
    assert readme == render_readme(readme), (
        "README's catalog is stale: run scripts/gen_catalog_doc.py"
    )


def test_readme_shows_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_reglab_help_lists_its_commands():
    out = subprocess.run(
        [sys.executable, "-m", "reglab.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "catalog"):
        assert command in out
