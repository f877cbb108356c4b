"""The dashboard end to end: a real ``reglab serve`` (embedded default, no key), real tiny runs
and sweeps, and Chromium reading back what each page plotted against the API's own answers."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, Watched, start_server, tiny

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(Path(tmp_path_factory.mktemp("dashboard")))
    base = srv.submit(tiny("baseline"))
    l2 = srv.submit(tiny("with-l2", [{"name": "l2", "strength": 1e-3}]))
    factorial = srv.http.post(
        "/v1/sweeps",
        json={
            "name": "l2-by-dropout",
            "base": tiny("fact", epochs=2),
            "method": "factorial",
            "factors": [{"name": "l2", "strength": 1e-3}, {"name": "dropout", "p": 0.2}],
            "seeds": 2,
        },
    )
    assert factorial.status_code == 202, factorial.text
    grid = srv.http.post(
        "/v1/sweeps",
        json={
            "name": "l2-strength",
            "base": tiny("grid", [{"name": "l2", "strength": 1e-3}], epochs=2),
            "space": {"regularizers[0].strength": [1e-4, 1e-3, 1e-2]},
        },
    )
    assert grid.status_code == 202, grid.text
    srv.ids = {"base": base["id"], "l2": l2["id"]}  # type: ignore[attr-defined]
    srv.sweeps = {"factorial": factorial.json()["id"], "grid": grid.json()["id"]}  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.http.close()
        srv.proc.stop()


def test_the_shell_loads_without_a_key_and_the_api_behind_it_answers(server: Server):
    assert server.http.get("/", follow_redirects=False).headers["location"] == "/ui/"
    shell = server.http.get("/ui/")
    assert shell.status_code == 200 and "app.js" in shell.text
    assert "default-src 'self'" in shell.headers["content-security-policy"]
    assert server.http.get("/ui/vendor/uPlot.esm.js").status_code == 200
    assert server.http.get("/ui/../service/settings.py").status_code == 404


def test_runs_table_filters_with_the_api_grammar(watched: Watched, server: Server):
    page = watched.open("runs")
    rows = page.locator("#runs tbody tr[data-id]")
    ids = set(rows.evaluate_all("rs => rs.map(r => r.dataset.id)"))
    assert {server.ids["base"], server.ids["l2"]} <= ids  # type: ignore[attr-defined]
    page.fill("input[name=filter]", "params.regularizers.l2.strength>=1e-4 and name=with-l2")
    page.click("form.toolbar button[type=submit]")
    watched.wait("document.querySelectorAll('#runs tbody tr[data-id]').length === 1")
    assert rows.first.get_attribute("data-id") == server.ids["l2"]  # type: ignore[attr-defined]
    # a filter the API refuses: its message is shown, the field marked
    watched.expect_console_error("status of 422")
    page.fill("input[name=filter]", "nosuchfield>>1")
    page.click("form.toolbar button[type=submit]")
    page.wait_for_selector("input[name=filter].invalid")
    assert page.locator("p.error").inner_text()


def test_run_page_plots_the_apis_values(watched: Watched, server: Server):
    eid = server.ids["base"]  # type: ignore[attr-defined]
    done = server.wait(eid)
    assert done["status"] == "succeeded", done
    api = server.http.get(f"/v1/experiments/{eid}/metrics").json()["series"]
    page = watched.open(f"runs/{eid}")
    watched.wait("window.__reglab && window.__reglab.plots['run:loss']")
    plotted = watched.js("window.__reglab.plots['run:loss']")
    assert plotted["x"] == [p["step"] for p in api["val_loss"]]
    for key in ("train_loss", "val_loss"):
        assert plotted["series"][key] == pytest.approx([p["value"] for p in api[key]])
    gap = watched.js("window.__reglab.plots['run:gen_gap'].series.gen_gap")
    assert gap == pytest.approx([p["value"] for p in api["gen_gap"]])
    # smoothing changes what is drawn, not the data; back to 0 is the API's values again
    page.locator("input[name=smoothing]").fill("0.9")
    smoothed = watched.js("window.__reglab.plots['run:loss'].series.val_loss")
    assert smoothed != plotted["series"]["val_loss"] and len(smoothed) == len(api["val_loss"])
    # the step range keeps only those steps
    page.fill("input[name=from]", "2")
    page.locator("input[name=from]").dispatch_event("change")
    assert watched.js("window.__reglab.plots['run:loss'].x") == [
        p["step"] for p in api["val_loss"] if p["step"] >= 2
    ]
    assert page.locator("#summary [data-metric=test_acc]").inner_text() != "–"
    assert page.locator("button[data-checkpoint]").count() >= 1
    assert eid in page.locator("#logs").inner_text()


def test_compare_two_runs(watched: Watched, server: Server):
    a, b = server.ids["base"], server.ids["l2"]  # type: ignore[attr-defined]
    server.wait(a), server.wait(b)
    page = watched.open("runs")
    # a click on a metric's header sorts by it, in the API's order
    page.click("#runs th[data-sort=test_acc]")
    watched.wait("location.hash.includes('sort=-test_acc')")
    ids = "[...document.querySelectorAll('#runs tbody tr[data-id]')].map(r => r.dataset.id)"
    deadline = time.monotonic() + 30  # runs of the sweeps may finish meanwhile: both move
    while True:
        params = {"sort": "-test_acc"}
        api_order = [
            r["id"] for r in server.http.get("/v1/experiments", params=params).json()["items"]
        ]
        if watched.js(ids) == api_order:
            break
        assert time.monotonic() < deadline, (watched.js(ids), api_order)
        time.sleep(0.5)
    page.check(f"#runs tr[data-id='{a}'] input[type=checkbox]")
    page.check(f"#runs tr[data-id='{b}'] input[type=checkbox]")
    page.click("#compare-selected")
    page.wait_for_selector("#final-metrics")
    watched.wait("window.__reglab.plots['compare:val_loss']")
    cmp = server.http.get("/v1/compare", params={"ids": f"{a},{b}", "keys": "val_loss"}).json()
    plotted = watched.js("window.__reglab.plots['compare:val_loss']")
    assert plotted["x"] == cmp["series"]["val_loss"]["steps"]
    drawn = list(plotted["series"].values())
    assert drawn[0] == pytest.approx(cmp["series"]["val_loss"]["values"][a])
    assert drawn[1] == pytest.approx(cmp["series"]["val_loss"]["values"][b])
    # the spec rows that differ (the l2 entry) are highlighted; equal ones are not
    assert page.locator("#spec-diff tr.diff[data-path^='regularizers[0]']").count() >= 1
    assert page.locator("#spec-diff tr.diff[data-path='train.lr']").count() == 0
    assert page.locator("#gap-table tr[data-regularizer=l2]").count() == 1


def test_factorial_sweep_shows_its_effects(watched: Watched, server: Server):
    sid = server.sweeps["factorial"]  # type: ignore[attr-defined]
    sweep = server.wait_sweep(sid)
    effects = sweep["results"]["effects"][sweep["metric"]]
    assert effects is not None, sweep["counts"]
    page = watched.open(f"sweeps/{sid}")
    watched.wait("window.__reglab.sweep && window.__reglab.sweep.effects")
    bars = {b["name"]: b for b in watched.js("window.__reglab.sweep.effects")}
    assert set(bars) == {"l2", "dropout", "l2 × dropout"}
    assert bars["l2"]["effect"] == pytest.approx(effects["main_effects"]["l2"]["effect"])
    inter = effects["interactions"]["l2:dropout"]
    assert bars["l2 × dropout"]["ci_high"] == pytest.approx(inter["ci_high"])
    assert page.locator("#results tbody tr").count() == 4
    assert page.locator("#effects canvas").count() >= 1
    assert page.locator("#parallel canvas").count() >= 1


def test_grid_sweep_uses_a_log_axis_and_clips_bands(watched: Watched, server: Server):
    sid = server.sweeps["grid"]  # type: ignore[attr-defined]
    server.wait_sweep(sid)
    page = watched.open(f"sweeps/{sid}?")
    watched.wait("window.__reglab.plots['sweep:regularizers[0].strength']")
    plot = watched.js("window.__reglab.plots['sweep:regularizers[0].strength']")
    assert plot["logX"] is True and plot["x"] == [1e-4, 1e-3, 1e-2]
    for band in plot["bands"].values():
        assert all(v is None or v >= 0 for v in band["low"])  # val_loss is never negative
    assert page.locator("#trials tbody tr").count() == 3


def test_submit_form_checks_before_sending_and_shows_the_apis_422_at_the_field(
    watched: Watched, server: Server
):
    page = watched.open("catalog")
    assert page.locator("#regularizers [data-regularizer]").count() == len(
        server.http.get("/v1/regularizers").json()["items"]
    )
    page.select_option("select[name=add-regularizer]", "dropout")
    page.click("#add-regularizer")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.method) if r.method == "POST" else None)
    # caught in the page (p < 1 in the catalog's schema): nothing is sent
    page.fill("[data-loc='regularizers[0].p']", "1.5")
    page.click("#submit-form")
    msg = page.locator(".field-error[data-for='regularizers[0].p']")
    assert "less than 1" in msg.inner_text()
    assert sent == []
    # a value only the API can refuse: its 422 lands at the field
    page.fill("[data-loc='regularizers[0].p']", "0.2")
    page.fill("[data-loc='train.device']", "tpu")
    watched.expect_console_error("status of 422")
    page.click("#submit-form")
    at = page.locator(".field-error[data-for='train.device']")
    at.wait_for()
    watched.wait("document.querySelector(\".field-error[data-for='train.device']\").textContent")
    direct = server.http.post("/v1/experiments", json={**tiny("x"), "train": {"device": "tpu"}})
    api_msg = next(e["msg"] for e in direct.json()["errors"] if e["loc"] == "train.device")
    assert at.inner_text() == api_msg
    assert page.locator("[data-loc='train.device'].invalid").count() == 1
    # fixed, it is accepted and the run page opens
    page.fill("[data-loc='train.device']", "cpu")
    page.fill("[data-loc='train.epochs']", "1")
    page.click("#submit-form")
    watched.wait("location.hash.startsWith('#/runs/')")
    eid = watched.js("location.hash").split("/")[-1]
    spec = server.http.get(f"/v1/experiments/{eid}").json()["spec"]
    assert spec["regularizers"][0]["name"] == "dropout"
    assert math.isclose(spec["regularizers"][0]["p"], 0.2)


def test_a_running_run_grows_live_and_the_cancel_button_stops_it(watched: Watched, server: Server):
    spec = tiny("live", epochs=500)
    spec["train"]["batch_size"] = 10
    eid = server.submit(spec)["id"]
    deadline = time.monotonic() + 120
    while server.http.get(f"/v1/experiments/{eid}").json()["progress"]["epoch"] < 2:
        assert time.monotonic() < deadline, server.proc.tail()
        time.sleep(0.3)
    page = watched.open(f"runs/{eid}")
    first = watched.js("window.__reglab.plots['run:loss'].x.length")
    watched.wait(f"window.__reglab.plots['run:loss'].x.length > {first}")  # since_step polling
    page.click("#cancel")
    done = server.wait(eid)
    assert done["status"] == "cancelled" and done["progress"]["epoch"] < 500
    watched.wait("document.querySelector('h1 [data-status]').dataset.status === 'cancelled'")
    steps = [
        p["step"]
        for p in server.http.get(f"/v1/experiments/{eid}/metrics").json()["series"]["val_loss"]
    ]
    watched.wait(f"window.__reglab.plots['run:loss'].x.length === {len(steps)}")
    # the summary the run ended with (a cancelled run keeps its last metrics) is drawn
    final = (done.get("summary") or {}).get("metrics") or {}
    rows = "document.querySelectorAll('#summary tr[data-metric], #summary td[data-metric]').length"
    watched.wait(f"{rows} === {len(final)}")


def test_a_checkpoint_downloads_from_the_run_page_with_the_apis_bytes(
    watched: Watched, server: Server
):
    eid = server.ids["base"]  # type: ignore[attr-defined]
    server.wait(eid)
    items = server.http.get(f"/v1/experiments/{eid}/checkpoints").json()["items"]
    assert items
    page = watched.open(f"runs/{eid}")
    for c in items:
        with page.expect_download() as got:
            page.click(f"button[data-checkpoint='{c['id']}']")
        data = Path(got.value.path()).read_bytes()
        assert data == server.http.get(c["url"]).content
        assert hashlib.sha256(data).hexdigest() == c["sha256"] and len(data) == c["size"]
        assert got.value.suggested_filename == f"{eid}-{c['kind']}-{c['epoch']}.safetensors"


def test_the_raw_spec_editor_shows_the_apis_error_naming_the_field_then_submits(
    watched: Watched, server: Server
):
    page = watched.open("catalog")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    # not JSON: said in the page, nothing sent
    page.fill("#raw-spec", '{"name": "raw",')
    page.click("#submit-raw")
    assert "not valid JSON" in page.locator("#raw-errors").inner_text()
    assert sent == []
    # a field the API refuses: its message, naming the field
    spec = tiny("raw-edited", epochs=1)
    spec["train"]["device"] = "tpu"
    direct = server.http.post("/v1/experiments", json=spec)
    assert direct.status_code == 422
    api_msg = next(e["msg"] for e in direct.json()["errors"] if e["loc"] == "train.device")
    watched.expect_console_error("status of 422")
    page.fill("#raw-spec", json.dumps(spec, indent=2))
    page.click("#submit-raw")
    shown = page.locator("#raw-errors p.error[data-loc='train.device']")
    shown.wait_for()
    assert shown.inner_text() == f"train.device: {api_msg}"
    assert len(sent) == 1
    # fixed, it is submitted as typed and the run page opens
    spec["train"]["device"] = "cpu"
    page.fill("#raw-spec", json.dumps(spec, indent=2))
    page.click("#submit-raw")
    watched.wait("location.hash.startsWith('#/runs/')")
    eid = watched.js("location.hash").split("/")[-1]
    row = server.http.get(f"/v1/experiments/{eid}").json()
    assert row["name"] == "raw-edited"
    assert row["spec"]["train"]["epochs"] == 1 and row["spec"]["train"]["device"] == "cpu"


def test_a_long_run_is_drawn_downsampled_and_every_point_is_fetched_when_zoomed_in(
    watched: Watched, server: Server
):
    spec = tiny("long", epochs=800)
    spec["data"].update(n_train=50, n_val=50, n_test=50)
    eid = server.submit(spec)["id"]
    assert server.wait(eid, timeout=240)["status"] == "succeeded"
    page = watched.open(f"runs/{eid}")
    asked = watched.js("window.__reglab.lastRender.maxPoints")
    assert 300 < asked < 800  # about a chart's width in pixels
    thin = server.http.get(
        f"/v1/experiments/{eid}/metrics", params={"keys": "gen_gap", "max_points": asked}
    ).json()["series"]["gen_gap"]
    plotted = watched.js("window.__reglab.plots['run:gen_gap']")
    assert plotted["x"] == [p["step"] for p in thin] and len(thin) == asked
    assert plotted["series"]["gen_gap"] == pytest.approx([p["value"] for p in thin])
    # a step range: every point in it, from the full series
    full = server.http.get(f"/v1/experiments/{eid}/metrics", params={"keys": "gen_gap"}).json()
    for name, value in (("from", "100"), ("to", "300")):
        page.fill(f"input[name={name}]", value)
        page.locator(f"input[name={name}]").dispatch_event("change")
    want = [p["step"] for p in full["series"]["gen_gap"] if 100 <= p["step"] <= 300]
    watched.wait(f"window.__reglab.plots['run:gen_gap'].x.length === {len(want)}")
    assert watched.js("window.__reglab.plots['run:gen_gap'].x") == want
    # a double-click on the charts clears the range: the whole run, now at full resolution
    page.dblclick("#charts .chart")
    watched.wait("window.__reglab.plots['run:gen_gap'].x.length === 800")
    assert watched.js("document.querySelector('input[name=from]').value") == ""
