"""reglab.client on a scripted transport: retries, both error shapes, pages, DataFrames."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable

import httpx
import pytest

from reglab.client import (
    AmbiguousIdError,
    InvalidSpecError,
    NotFoundError,
    RegLabAPIError,
    RegLabClient,
    retry_after_seconds,
)

Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*responses: httpx.Response) -> tuple[RegLabClient, list[httpx.Request], list[float]]:
    """A client whose server answers ``responses`` in order; returns its requests and sleeps."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    slept: list[float] = []
    http = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(handle))
    return RegLabClient(http=http, sleep=slept.append, max_retry_wait=5), seen, slept


def busy(after: str = "2") -> httpx.Response:
    return httpx.Response(
        503,
        headers={"Retry-After": after},
        json={"type": "urn:reglab:problem:not-ready", "title": "not ready", "status": 503},
    )


def test_a_get_is_retried_on_503_after_the_time_it_says():
    lab, seen, slept = scripted(busy("2"), busy("60"), httpx.Response(200, json={"id": "e1"}))
    assert lab.get("e1") == {"id": "e1"}
    assert len(seen) == 3 and slept == [2.0, 5.0]  # the second wait capped at max_retry_wait


def test_retries_stop_after_the_budget_and_raise_the_last_answer():
    lab, seen, slept = scripted(*(busy("1") for _ in range(4)))
    with pytest.raises(RegLabAPIError) as info:
        lab.get("e1")
    assert info.value.status == 503 and info.value.retry_after == 1.0
    assert len(seen) == 4 and slept == [1.0, 1.0, 1.0]


def test_a_submit_is_retried_only_with_an_idempotency_key():
    lab, seen, _ = scripted(busy(), httpx.Response(201, json={"id": "e1"}))
    assert lab.submit({"name": "x"}, idempotency_key="k1")["id"] == "e1"
    assert [r.headers["Idempotency-Key"] for r in seen] == ["k1", "k1"]
    lab, seen, slept = scripted(busy())
    with pytest.raises(RegLabAPIError):
        lab.submit({"name": "x"})
    assert len(seen) == 1 and slept == []


def test_a_503_without_retry_after_and_a_cancel_are_never_repeated():
    lab, seen, _ = scripted(httpx.Response(503, json={"error": "not ready"}))
    with pytest.raises(RegLabAPIError, match="not ready"):
        lab.get("e1")
    lab, seen, _ = scripted(busy())
    with pytest.raises(RegLabAPIError):
        lab.cancel("e1")
    assert len(seen) == 1


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_seconds(when) <= 30
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_download_retries_a_busy_store(tmp_path):
    lab, seen, slept = scripted(busy("3"), httpx.Response(200, content=b"weights"))
    out = lab.download_checkpoint("e1", "c1", tmp_path / "w.safetensors")
    assert out.read_bytes() == b"weights" and slept == [3.0] and len(seen) == 2


@pytest.mark.parametrize(
    "body",
    [
        {  # RFC 9457
            "type": "urn:reglab:problem:invalid-spec",
            "title": "invalid spec",
            "status": 422,
            "detail": "regularizers[1].p: Input should be less than 1",
            "errors": [{"loc": "regularizers[1].p", "msg": "Input should be less than 1"}],
        },
        {  # the older shape
            "error": "invalid spec",
            "detail": [{"field": "regularizers[1].p", "message": "Input should be less than 1"}],
        },
    ],
)
def test_both_error_shapes_give_the_same_fields_and_message(body):
    lab, _, _ = scripted(httpx.Response(422, json=body))
    with pytest.raises(InvalidSpecError) as info:
        lab.submit({})
    err = info.value
    assert err.fields == ["regularizers[1].p"] and err.title == "invalid spec"
    assert err.describe() == "invalid spec: regularizers[1].p: Input should be less than 1"


def test_a_not_found_problem_and_a_body_that_is_not_json():
    lab, _, _ = scripted(
        httpx.Response(404, json={"title": "not found", "detail": "experiment x does not exist"}),
        httpx.Response(502, text="<html>bad gateway</html>"),
    )
    with pytest.raises(NotFoundError, match="not found: experiment x does not exist"):
        lab.get("x")
    with pytest.raises(RegLabAPIError, match="bad gateway"):
        lab.get("x")


def test_iterating_follows_the_cursor_and_passes_filter_and_sort():
    lab, seen, _ = scripted(
        httpx.Response(200, json={"items": [{"id": "a"}, {"id": "b"}], "next_cursor": "c2"}),
        httpx.Response(200, json={"items": [{"id": "c"}], "next_cursor": None}),
    )
    got = [e["id"] for e in lab.iter_experiments(filter="test_acc>0.5", sort="-test_acc")]
    assert got == ["a", "b", "c"]
    assert seen[0].url.params["filter"] == "test_acc>0.5" and "cursor" not in seen[0].url.params
    assert seen[1].url.params["cursor"] == "c2" and seen[1].url.params["sort"] == "-test_acc"


def test_prefixes_resolve_to_one_id_or_say_which_match():
    page = {"items": [{"id": "ab" + "0" * 30}, {"id": "ab" + "1" * 30}], "next_cursor": None}
    lab, _, _ = scripted(*(httpx.Response(200, json=page) for _ in range(3)))
    assert lab.resolve_experiment("AB1") == "ab" + "1" * 30
    with pytest.raises(AmbiguousIdError) as info:
        lab.resolve_experiment("ab")
    assert len(info.value.matches) == 2
    with pytest.raises(NotFoundError):
        lab.resolve_experiment("cd")
    assert lab.resolve_experiment("f" * 32) == "f" * 32  # a whole id: no listing


def test_the_other_routes_send_what_the_contract_names(tmp_path):
    lab, seen, _ = scripted(
        httpx.Response(200, json={"id": "e1", "tags": {"team": "a"}}),
        httpx.Response(200, json={"id": "s1"}),
        httpx.Response(200, json={"items": [], "table": {}}),
        httpx.Response(201, json={"id": "d1"}),
        httpx.Response(204),
        httpx.Response(200, json={"items": []}),
    )
    lab.update("e1", tags={"team": "a"}, note="n")
    lab.update_sweep("s1", name="better")
    lab.compare(["a", "b"], keys=["test_acc"])
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,0\n")
    lab.upload_dataset(data, name="d", task="classification", target="y")
    lab.delete_dataset("d1")
    lab.logs("e1", since=5)
    methods = [(r.method, r.url.path) for r in seen]
    assert methods == [
        ("PATCH", "/v1/experiments/e1"),
        ("PATCH", "/v1/sweeps/s1"),
        ("GET", "/v1/compare"),
        ("POST", "/v1/datasets"),
        ("DELETE", "/v1/datasets/d1"),
        ("GET", "/v1/experiments/e1/logs"),
    ]
    assert json.loads(seen[0].content) == {"tags": {"team": "a"}, "note": "n"}
    assert json.loads(seen[1].content) == {"name": "better"}
    assert seen[2].url.params["ids"] == "a,b" and seen[2].url.params["keys"] == "test_acc"
    assert b'name="file"; filename="d.csv"' in seen[3].content and b"x,y" in seen[3].content
    assert seen[5].url.params["since"] == "5"


def test_frames():
    pytest.importorskip("pandas")
    lab, _, _ = scripted(
        httpx.Response(
            200,
            json={
                "items": [
                    {
                        "id": "a",
                        "name": "x",
                        "status": "succeeded",
                        "tags": {"team": "t"},
                        "summary": {"metrics": {"test_acc": 0.5}},
                    },
                    {"id": "b", "name": "y", "status": "queued", "summary": None},
                ],
                "next_cursor": None,
            },
        ),  # fmt: skip
        httpx.Response(200, json={"series": {"val_loss": [{"step": 1, "value": 0.5}]}}),
    )
    frame = lab.experiments_frame()
    assert list(frame["id"]) == ["a", "b"] and frame.loc[0, "metrics.test_acc"] == 0.5
    assert frame.loc[0, "tags.team"] == "t"
    series = lab.metrics_frame("a")
    assert series.to_dict("records") == [{"key": "val_loss", "step": 1, "value": 0.5}]
