"""Tables never cut a cell: folded on a narrow terminal, whole in TSV elsewhere."""

from __future__ import annotations

import re
import sys

from reglab.output import Col, table

ID = "0123456789abcdef0123456789abcdef"
PARAMS = "regularizers.l2.strength=0.001, regularizers.dropout.p=0.5, model.hidden=[64, 64]"


def test_a_narrow_terminal_folds_cells_and_keeps_ids_whole(monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "60")
    table([Col("id", whole=True), "parameters", Col("n", right=True)], [(ID, PARAMS, 3)])
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # no colours
    assert ID in out  # on one line, not folded
    assert "…" not in out and "..." not in out
    body = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    flat = "".join(cells[2].strip() for cells in body)
    assert PARAMS.replace(" ", "") in flat.replace(" ", "")  # every character of the cell
    assert max(len(line) for line in out.splitlines()) <= 60


def test_tsv_off_a_terminal_and_markup_is_never_interpreted(capsys):
    table(["id", "name"], [(ID, "[bold]not bold[/bold]")], title="sweep [x]")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "# sweep [x]",
        "id\tname",
        f"{ID}\t[bold]not bold[/bold]",
    ]
