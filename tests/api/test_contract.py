"""The typed contract: problem+json errors, typed 2xx bodies with stable operationIds, /docs with
no outside host; PATCH of tags, note and name."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException

from tests.api.conftest import spec, submit


def test_every_json_2xx_body_is_a_named_schema_and_operation_ids_are_route_names(client):
    schema = client.get("/openapi.json").json()
    ops = {}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            ops[op["operationId"]] = (method, path)
            for code, response in op["responses"].items():
                content = response.get("content", {})
                if code.startswith("2") and "application/json" in content:
                    ref = content["application/json"]["schema"].get("$ref", "")
                    assert ref.startswith("#/components/schemas/"), (method, path, content)
                if code[0] in "45":
                    assert list(content) == ["application/problem+json"], (method, path, code)
    assert ops["list_experiments"] == ("get", "/v1/experiments")
    assert ops["update_experiment"] == ("patch", "/v1/experiments/{experiment_id}")
    assert ops["update_sweep"] == ("patch", "/v1/sweeps/{sweep_id}")
    assert ops["compare_experiments"] == ("get", "/v1/compare")
    assert {"Experiment", "ExperimentBrief", "Problem", "FieldError", "Patch", "Health",
            "Readiness", "LogPage"} <= set(schema["components"]["schemas"])  # fmt: skip


def test_docs_load_only_from_this_server(client):
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls and all(u.startswith("/docs/assets/") for u in urls), urls
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert "cdn" not in page.text.lower()


def test_errors_of_any_router_are_problems(client):
    router = APIRouter()

    @router.get("/v1/raises")
    def raises() -> None:
        raise HTTPException(409, "busy right now")

    client.app.include_router(router)
    r = client.get("/v1/raises")
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "urn:reglab:problem:conflict",
        "title": "conflict",
        "status": 409,
        "detail": "busy right now",
        "instance": "/v1/raises",
    }
    r = client.get("/v1/experiments", params={"limit": 0})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"loc": "query.limit", "msg": r.json()["errors"][0]["msg"]}]
    assert r.json()["detail"].startswith("query.limit: ")


def test_patch_sets_and_removes_tags_and_changes_note_and_name(client):
    eid = submit(client)["id"]
    r = client.patch(
        f"/v1/experiments/{eid}",
        json={"tags": {"team": "vision", "stage": "try"}, "note": "first", "name": "renamed"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tags"] == {"team": "vision", "stage": "try"}
    assert (body["note"], body["name"]) == ("first", "renamed")
    r = client.patch(f"/v1/experiments/{eid}", json={"tags": {"stage": None, "x": "1"}})
    assert r.json()["tags"] == {"team": "vision", "x": "1"} and r.json()["note"] == "first"
    r = client.patch(f"/v1/experiments/{eid}", json={"note": None})
    assert r.json()["note"] is None and r.json()["name"] == "renamed"
    assert client.get(f"/v1/experiments/{eid}").json()["tags"] == {"team": "vision", "x": "1"}


def test_a_bad_patch_is_422_naming_the_field(client):
    eid = submit(client)["id"]
    cases = [
        ({"tags": {"team": 3}}, "tags.team"),
        ({"tags": {"bad key": "x"}}, "tags.bad key"),
        ({"tags": {f"k{i}": "v" for i in range(33)}}, "tags"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"colour": "red"}, "colour"),
        ({"note": "x" * 10_001}, "note"),
    ]
    for body, loc in cases:
        r = client.patch(f"/v1/experiments/{eid}", json=body)
        assert r.status_code == 422, (body, r.text)
        assert loc in [e["loc"] for e in r.json()["errors"]], (body, r.json())
    many = {f"k{i}": "v" for i in range(20)}
    assert client.patch(f"/v1/experiments/{eid}", json={"tags": many}).status_code == 200
    more = {f"j{i}": "v" for i in range(20)}
    r = client.patch(f"/v1/experiments/{eid}", json={"tags": more})
    assert r.status_code == 422 and "at most 32 tags" in r.json()["detail"]
    r = client.patch(f"/v1/experiments/{eid}", content=b"name=x",
                     headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 415
    assert client.patch(f"/v1/experiments/{'0' * 32}", json={"note": "x"}).status_code == 404


def test_patch_a_sweep(client):
    body = {"name": "sw", "base": spec(), "space": {"train.lr": [0.01, 0.1]}, "method": "grid"}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    r = client.patch(f"/v1/sweeps/{sid}", json={"tags": {"paper": "fig2"}, "note": "n"})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == {"paper": "fig2"} and r.json()["note"] == "n"
    listed = client.get("/v1/sweeps").json()["items"]
    assert listed[0]["tags"] == {"paper": "fig2"}
