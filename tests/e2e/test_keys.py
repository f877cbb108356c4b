"""The dashboard behind API keys (``REGLAB_AUTH=on``): the shell loads without one, the page asks
for a key once, keeps it for the tab, and shows only the key owner's experiments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from service.db import api_keys
from service.db import experiments as repo
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine
from tests.e2e.conftest import Server, Watched, start_server, tiny

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cwd = Path(tmp_path_factory.mktemp("keys"))
    url = f"sqlite:///{cwd}/var/reglab.db"
    upgrade_to_head(url)
    engine = make_engine(url)
    made = {}
    with Session(engine) as session:
        for owner in ("alice", "bob"):
            _, made[owner] = api_keys.create(session, owner, "e2e")
            row = repo.create(
                session, name=f"{owner}-run", spec=tiny(f"{owner}-run"), spec_hash="0" * 64,
                queue="cpu", total_epochs=3, max_attempts=3, owner=owner,
            )  # fmt: skip
            made[f"{owner}-id"] = row.id
        session.commit()
    engine.dispose()
    srv = start_server(cwd, "--no-worker", env={"REGLAB_AUTH": "on"})
    srv.made = made  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.http.close()
        srv.proc.stop()


def test_the_page_asks_for_a_key_keeps_it_and_shows_only_its_owners_runs(
    watched: Watched, server: Server
):
    made = server.made  # type: ignore[attr-defined]
    assert server.http.get("/ui/").status_code == 200  # the shell needs no key
    assert server.http.get("/v1/experiments").status_code == 401  # the data does
    watched.expect_console_error("status of 401")
    page = watched.open("runs")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    assert "API key" in dialog.inner_text()
    page.fill("#key-input", made["alice"])
    page.click("#key-save")
    page.wait_for_selector(f"#runs tr[data-id='{made['alice-id']}']")
    shown = page.locator("#runs tbody tr[data-id]").evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert shown == [made["alice-id"]]  # bob's run is not alice's to see
    assert watched.js("sessionStorage.getItem('reglab.apiKey')") == made["alice"]
    # kept for the tab: a reload asks nothing
    page.reload()
    page.wait_for_selector(f"#runs tr[data-id='{made['alice-id']}']")
    assert not dialog.is_visible()
    # another owner's run is as unknown as one that never existed
    watched.expect_console_error("status of 404")
    watched.open(f"runs/{made['bob-id']}")
    assert "does not exist" in page.locator("#view p.error").inner_text()
