"""The Python client of the RegLab REST API (httpx only: no FastAPI, no SQLAlchemy, no torch).

    from reglab.client import RegLabClient
    with RegLabClient() as lab:                       # REGLAB_API_URL, or http://127.0.0.1:8000
        exp = lab.submit(spec_dict, idempotency_key="my-run-1")
        done = lab.wait(exp["id"], timeout=600, on_progress=lambda e: print(e["progress"]))
        curves = lab.metrics(exp["id"], keys=["train_loss", "val_loss"], max_points=200)
        table = lab.experiments_frame(filter="test_acc>0.8", sort="-test_acc")  # pandas

``api_key`` is sent as ``Authorization: Bearer <key>``; the client never reads it from the
environment (the CLI takes ``--api-key`` / ``REGLAB_API_KEY`` and passes it).

Every non-2xx answer raises :class:`RegLabAPIError` (:class:`NotFoundError` for 404,
:class:`InvalidSpecError` for 422) carrying the status and the server's error body, which may be
an RFC 9457 problem (``type, title, status, detail, errors: [{loc, msg}]``) or the older
``{error, detail}``. A 503 or 429 carrying ``Retry-After`` is retried (``retries`` times, waiting
as told, at most ``max_retry_wait`` seconds each) for reads and for submits that carry an
``Idempotency-Key``, which the server deduplicates; any other request is never repeated.

The ``*_frame`` methods return pandas DataFrames; pandas is imported only when one is called
(``pip install 'reglab[client]'`` brings it).
"""

from __future__ import annotations

import builtins
import email.utils
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import httpx

if TYPE_CHECKING:  # pragma: no cover
    import pandas

DEFAULT_API_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ID_LENGTH = 32  # ids are uuid4 hex
#: statuses whose ``Retry-After`` is honoured for requests that are safe to repeat
RETRY_STATUSES = frozenset({429, 503})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# --- response shapes (what the server sends; fields the server adds later pass through) ----------


class Progress(TypedDict, total=False):
    epoch: int
    epochs: int


class Experiment(TypedDict, total=False):
    id: str
    name: str
    status: str
    owner: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: Progress
    summary: dict[str, Any] | None
    spec: dict[str, Any]
    error: str | None
    tags: dict[str, str]
    note: str | None
    sweep_id: str | None
    queue: str


class Page(TypedDict, total=False):
    items: list[dict[str, Any]]
    next_cursor: str | None


class Point(TypedDict):
    step: int
    value: float | None


class Checkpoint(TypedDict, total=False):
    id: str
    kind: str
    epoch: int
    size: int
    sha256: str
    created_at: str


class Sweep(TypedDict, total=False):
    id: str
    name: str
    status: str
    method: str
    created_at: str
    counts: dict[str, int]
    experiments: list[dict[str, Any]]
    results: dict[str, Any]
    tags: dict[str, str]
    note: str | None


class Comparison(TypedDict, total=False):
    items: list[dict[str, Any]]
    table: dict[str, dict[str, float | None]]


class Dataset(TypedDict, total=False):
    id: str
    name: str
    task: str
    shape: list[int]
    classes: int | None
    bytes: int
    sha256: str
    created_at: str


Items = list[dict[str, Any]]


# --- errors -----------------------------------------------------------------------------------


class RegLabError(Exception):
    """Anything that went wrong talking to the service."""


class RegLabConnectionError(RegLabError):
    """The server could not be reached."""


class RegLabAPIError(RegLabError):
    """The server answered with an error status.

    ``body`` is its JSON error body; ``title`` the problem in a few words, ``detail`` this
    occurrence (a sentence), ``errors`` every field at fault as ``{"loc", "msg"}`` dicts. Both
    the RFC 9457 problem shape and the older ``{"error", "detail": str | [{field, message}]}``
    are read.
    """

    def __init__(self, status: int, body: Any, method: str = "", url: str = ""):
        self.status = status
        self.body = body
        self.title, self.detail, self.errors = _read_problem(body)
        self.error = self.title  # the older name
        self.retry_after: float | None = None
        where = f"{method} {url} -> {status}: " if method else ""
        super().__init__(where + self.describe())

    def describe(self) -> str:
        """The problem in one line: ``title: loc: msg; loc: msg`` or ``title: detail``."""
        if self.errors:
            parts = "; ".join(
                f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in self.errors
            )
            return f"{self.title or 'error'}: {parts}"
        if self.title and self.detail and self.detail != self.title:
            return f"{self.title}: {self.detail}"
        return str(self.title or self.detail or "no error body")


def _read_problem(body: Any) -> tuple[str | None, str | None, list[dict[str, str]]]:
    """(title, detail sentence, field errors) from either error shape."""
    if not isinstance(body, dict):
        return None, None if body is None else str(body), []
    title = body.get("title") or body.get("error")
    detail = body.get("detail")
    raw = body.get("errors")
    if raw is None and isinstance(detail, list):  # the older 422: detail is the field list
        raw, detail = detail, None
    errors = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            loc = item.get("loc", item.get("field", ""))
            if isinstance(loc, list):  # FastAPI's own shape: ["body", "name"]
                loc = ".".join(str(p) for p in loc)
            errors.append({"loc": str(loc or ""), "msg": str(item.get("msg", item.get("message")))})
        else:
            errors.append({"loc": "", "msg": str(item)})
    return (
        None if title is None else str(title),
        None if detail is None else str(detail),
        errors,
    )


class NotFoundError(RegLabAPIError):
    """404: no such experiment, sweep, checkpoint or dataset."""


class InvalidSpecError(RegLabAPIError):
    """422: the spec (or request) failed validation; ``fields`` lists the offending paths."""

    @property
    def fields(self) -> list[str]:
        return [e["loc"] for e in self.errors]


class AmbiguousIdError(RegLabError):
    """An id prefix matched more than one experiment (or sweep); ``matches`` are their ids."""

    def __init__(self, kind: str, prefix: str, matches: Sequence[str]):
        self.matches = list(matches)
        shown = ", ".join(self.matches[:10]) + (" ..." if len(self.matches) > 10 else "")
        super().__init__(
            f"{kind} id prefix {prefix!r} is ambiguous: {len(self.matches)} match ({shown}); "
            "give more characters"
        )


class WaitTimeout(RegLabError, TimeoutError):
    """``wait`` gave up before the experiment ended; ``experiment`` is the last state seen."""

    def __init__(self, experiment: Mapping[str, Any], timeout: float):
        self.experiment = experiment
        super().__init__(
            f"experiment {experiment.get('id')} still {experiment.get('status')} after {timeout}s"
        )


def _error_for(response: httpx.Response) -> RegLabAPIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = {"title": response.reason_phrase, "detail": response.text[:500] or None}
    cls = {404: NotFoundError, 422: InvalidSpecError}.get(response.status_code, RegLabAPIError)
    error = cls(response.status_code, body, response.request.method, str(response.request.url))
    error.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    return error


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _csv(values: Sequence[str] | str | None) -> str | None:
    if not values:
        return None
    return values if isinstance(values, str) else ",".join(values)


# --- the client -------------------------------------------------------------------------------


class RegLabClient:
    """Synchronous client. ``http`` lets tests pass their own ``httpx.Client`` (e.g. TestClient).

    ``retries`` and ``max_retry_wait`` bound the retries of safe requests on 503/429 with a
    ``Retry-After`` header; ``sleep`` is how it waits (tests pass a fake).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if base_url is None and http is not None:
            base_url = str(http.base_url)
        base_url = base_url or os.environ.get("REGLAB_API_URL") or DEFAULT_API_URL
        self.base_url = base_url.rstrip("/")
        self.retries, self.max_retry_wait, self._sleep = retries, max_retry_wait, sleep
        headers = {"Accept": "application/json, application/problem+json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if http is not None:
            http.headers.update(headers)
            self._http, self._owned = http, False
        else:
            self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
            self._owned = True

    # --- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> RegLabClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retryable(self, method: str, headers: Mapping[str, str] | None) -> bool:
        return method.upper() in SAFE_METHODS or bool(headers and headers.get("Idempotency-Key"))

    def _pause(self, response: httpx.Response, attempt: int, retryable: bool) -> float | None:
        """Seconds to wait before retrying ``response``, or None when it must not be retried."""
        if not retryable or attempt >= self.retries or response.status_code not in RETRY_STATUSES:
            return None
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return None if wait is None else min(wait, self.max_retry_wait)

    def _unreachable(self, exc: httpx.TransportError) -> RegLabConnectionError:
        return RegLabConnectionError(
            f"cannot reach the RegLab API at {self.base_url}: {exc} "
            "(is `reglab serve` running? set REGLAB_API_URL to point elsewhere)"
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        retryable = self._retryable(method, kwargs.get("headers"))
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from exc
            if not response.is_error:
                return response
            wait = self._pause(response, attempt, retryable)
            if wait is None:
                raise _error_for(response)
            attempt += 1
            self._sleep(wait)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- experiments --------------------------------------------------------------------------

    def submit(
        self, spec: Mapping[str, Any] | str | Path | Any, idempotency_key: str | None = None
    ) -> Experiment:
        """Queue an experiment. ``spec``: a dict, a pydantic spec, or a path to a JSON file.

        With ``idempotency_key`` a 503/429 with Retry-After is retried (the server answers a
        repeat with the experiment the first one created)."""
        if isinstance(spec, str | Path):
            spec = json.loads(Path(spec).read_text())
        elif hasattr(spec, "model_dump"):
            spec = spec.model_dump(mode="json")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/experiments", json=dict(spec), headers=headers)

    def get(self, experiment_id: str) -> Experiment:
        return self._json("GET", f"/v1/experiments/{experiment_id}")

    def list(
        self,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        filter: str | None = None,
        sort: str | None = None,
    ) -> Page:
        """One page: ``{"items": [...], "next_cursor": ...}`` (newest first unless ``sort``).

        ``filter`` and ``sort`` follow the server's grammar (``test_acc>0.8 and
        status=succeeded``, ``-test_acc``)."""
        params = {"status": status, "name": name, "limit": limit, "cursor": cursor}
        params |= {"filter": filter, "sort": sort}
        return self._json("GET", "/v1/experiments", params=_drop_none(params))

    def iter_experiments(
        self,
        status: str | None = None,
        name: str | None = None,
        page_size: int = 100,
        filter: str | None = None,
        sort: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every matching experiment, following the cursor."""
        return self._pages(
            lambda cursor: self.list(status, name, page_size, cursor, filter=filter, sort=sort)
        )

    def _pages(self, fetch: Callable[[str | None], Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = fetch(cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def update(
        self,
        experiment_id: str,
        *,
        tags: Mapping[str, str] | None = None,
        note: str | None = None,
        name: str | None = None,
    ) -> Experiment:
        """``PATCH`` the experiment's ``tags``, ``note`` or ``name`` (only those given)."""
        body = _drop_none(
            {"tags": None if tags is None else dict(tags), "note": note, "name": name}
        )
        return self._json("PATCH", f"/v1/experiments/{experiment_id}", json=body)

    def cancel(self, experiment_id: str) -> Experiment:
        return self._json("POST", f"/v1/experiments/{experiment_id}/cancel")

    def wait(
        self,
        experiment_id: str,
        timeout: float | None = None,
        poll: float = 1.0,
        on_progress: Callable[[Experiment], None] | None = None,
    ) -> Experiment:
        """Poll until the experiment ends; ``on_progress(experiment)`` after every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            experiment = self.get(experiment_id)
            if on_progress is not None:
                on_progress(experiment)
            if experiment["status"] in TERMINAL:
                return experiment
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(experiment, timeout or 0.0)
            pause = poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    def metrics(
        self,
        experiment_id: str,
        keys: Sequence[str] | str | None = None,
        max_points: int | None = None,
        since_step: int | None = None,
    ) -> dict[str, builtins.list[Point]]:
        """``{key: [{"step": s, "value": v}, ...]}``."""
        params = _drop_none(
            {"keys": _csv(keys), "max_points": max_points or None, "since_step": since_step}
        )
        path = f"/v1/experiments/{experiment_id}/metrics"
        return self._json("GET", path, params=params)["series"]

    def checkpoints(self, experiment_id: str) -> builtins.list[Checkpoint]:
        return self._json("GET", f"/v1/experiments/{experiment_id}/checkpoints")["items"]

    def download_checkpoint(
        self, experiment_id: str, checkpoint_id: str, path: str | Path, sha256: str | None = None
    ) -> Path:
        """Stream the safetensors file to ``path`` (a folder gets a default name).

        The file appears only once complete; with ``sha256`` its digest is checked too. A 503
        with Retry-After (the artifact store briefly unreachable) is retried."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{experiment_id}-{checkpoint_id}.safetensors"
        url = f"/v1/experiments/{experiment_id}/checkpoints/{checkpoint_id}/file"
        partial = path.with_name(path.name + ".part")
        attempt = 0
        try:
            while True:
                digest = hashlib.sha256()
                with self._http.stream("GET", url) as response:
                    if response.is_error:
                        response.read()
                        wait = self._pause(response, attempt, retryable=True)
                        if wait is None:
                            raise _error_for(response)
                    else:
                        with partial.open("wb") as fh:
                            for chunk in response.iter_bytes():
                                fh.write(chunk)
                                digest.update(chunk)
                        break
                attempt += 1
                self._sleep(wait)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise RegLabConnectionError(f"download from {self.base_url} failed: {exc}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if sha256 is not None and digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise RegLabError(
                f"checkpoint {checkpoint_id} arrived corrupted: sha256 {digest.hexdigest()} "
                f"!= expected {sha256}"
            )
        partial.replace(path)
        return path

    def logs(
        self, experiment_id: str, since: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """``GET /v1/experiments/{id}/logs``: ``{"items": [{"seq", "time", "level", "logger",
        "attempt", "message"}], "next_since", "last_seq", "status"}``, the lines after seq
        ``since`` (pass ``next_since`` back for the next page)."""
        path = f"/v1/experiments/{experiment_id}/logs"
        return self._json("GET", path, params=_drop_none({"since": since, "limit": limit}))

    def follow_logs(self, experiment_id: str, since: int | None = None) -> Iterator[dict[str, Any]]:
        """``?follow=true``: each line (as in ``logs``) as the server streams it (server-sent
        events), until the run ends and its last lines are in."""
        path = f"/v1/experiments/{experiment_id}/logs"
        params = _drop_none({"since": since, "follow": "true"})
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.is_error:
                    response.read()
                    raise _error_for(response)
                event, data = "message", []
                for line in response.iter_lines():
                    if line.startswith(":"):  # a comment: keep-alive
                        continue
                    if line:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            event = value
                        elif field == "data":
                            data.append(value)
                        continue
                    if data and event == "log":  # a blank line ends an event
                        yield json.loads("\n".join(data))
                    elif event == "end":
                        return
                    event, data = "message", []
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # --- id prefixes --------------------------------------------------------------------------

    def resolve_experiment(self, prefix: str) -> str:
        """The one experiment id starting with ``prefix`` (a whole id is returned as it is)."""
        return self.resolve_experiments([prefix])[0]

    def resolve_experiments(self, prefixes: Sequence[str]) -> builtins.list[str]:
        """Each prefix's one experiment id, listing the experiments once (only when a prefix
        is shorter than a whole id). Raises NotFoundError or AmbiguousIdError naming it."""
        return self._resolve("experiment", prefixes, lambda: self.iter_experiments(page_size=500))

    def resolve_sweep(self, prefix: str) -> str:
        """The one sweep id starting with ``prefix``."""
        return self._resolve("sweep", [prefix], lambda: self.iter_sweeps(page_size=200))[0]

    def _resolve(
        self, kind: str, prefixes: Sequence[str], items: Callable[[], Iterator[dict]]
    ) -> builtins.list[str]:
        wanted = [p.strip().lower() for p in prefixes]
        if any(not p for p in wanted):
            raise RegLabError(f"an empty {kind} id")
        partial = {p for p in wanted if len(p) < ID_LENGTH}
        known = [str(i["id"]) for i in items()] if partial else []
        out = []
        for prefix in wanted:
            if prefix not in partial:
                out.append(prefix)
                continue
            matches = [i for i in known if i.startswith(prefix)]
            if not matches:
                body = {"title": "not found", "detail": f"no {kind} id starts with {prefix!r}"}
                raise NotFoundError(404, body)
            if len(matches) > 1:
                raise AmbiguousIdError(kind, prefix, matches)
            out.append(matches[0])
        return out

    # --- sweeps and comparisons ---------------------------------------------------------------

    def create_sweep(self, body: Mapping[str, Any], idempotency_key: str | None = None) -> Sweep:
        """Start a sweep (``POST /v1/sweeps``: base, space, method, trials, seeds, ...)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/sweeps", json=dict(body), headers=headers)

    def sweep(self, sweep_id: str, keys: Sequence[str] | str | None = None) -> Sweep:
        """The sweep with its experiments and results (``keys``: the result metrics)."""
        params = _drop_none({"keys": _csv(keys)})
        return self._json("GET", f"/v1/sweeps/{sweep_id}", params=params)

    def sweeps(self, limit: int | None = None, cursor: str | None = None) -> Page:
        """One page of sweeps, newest first."""
        params = _drop_none({"limit": limit, "cursor": cursor})
        return self._json("GET", "/v1/sweeps", params=params)

    def iter_sweeps(self, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Every sweep, following ``next_cursor`` when the server pages."""
        return self._pages(lambda cursor: self.sweeps(page_size, cursor))

    def update_sweep(
        self,
        sweep_id: str,
        *,
        tags: Mapping[str, str] | None = None,
        note: str | None = None,
        name: str | None = None,
    ) -> Sweep:
        body = _drop_none(
            {"tags": None if tags is None else dict(tags), "note": note, "name": name}
        )
        return self._json("PATCH", f"/v1/sweeps/{sweep_id}", json=body)

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        return self._json("POST", f"/v1/sweeps/{sweep_id}/cancel")

    def sweep_plot(
        self,
        sweep_id: str,
        y: str | None = None,
        x: str | None = None,
        kind: Literal["line", "reliability"] = "line",
    ) -> bytes:
        """The sweep's PNG plot."""
        params = _drop_none({"y": y, "x": x, "kind": kind})
        return self._request("GET", f"/v1/sweeps/{sweep_id}/plot", params=params).content

    def compare(self, ids: Sequence[str], keys: Sequence[str] | str | None = None) -> Comparison:
        """Experiments side by side: ``{"items": [...], "table": {key: {id: value}}}``."""
        params = _drop_none({"ids": ",".join(ids), "keys": _csv(keys)})
        return self._json("GET", "/v1/compare", params=params)

    # --- datasets -----------------------------------------------------------------------------

    def upload_dataset(
        self,
        path: str | Path,
        name: str | None = None,
        task: str = "classification",
        target: str | None = None,
        kind: str | None = None,
    ) -> Dataset:
        """``POST /v1/datasets`` (multipart): a local file becomes a dataset specs can name as
        ``{"name": "upload", "id": ...}``. ``target``: a table's label column; ``kind``: npz
        only, ``signal`` for (N, C, L) arrays (3-D arrays are read as images)."""
        path = Path(path)
        data = _drop_none({"name": name, "task": task, "target": target, "kind": kind})
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            return self._json("POST", "/v1/datasets", data=data, files=files)

    def datasets(self) -> builtins.list[Dataset]:
        return self._json("GET", "/v1/datasets")["items"]

    def dataset(self, dataset_id: str) -> Dataset:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # --- catalog and health -------------------------------------------------------------------

    def regularizers(self) -> Items:
        return self._json("GET", "/v1/regularizers")["items"]

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        return self._json("GET", "/readyz")

    # --- pandas -------------------------------------------------------------------------------

    def experiments_frame(
        self,
        status: str | None = None,
        name: str | None = None,
        filter: str | None = None,
        sort: str | None = None,
    ) -> pandas.DataFrame:
        """Every matching experiment, one row each: id, name, status, times, and each final
        metric of its summary as a column (``metrics.<key>``), tags as ``tags.<key>``."""
        pd = _pandas()
        rows = []
        for e in self.iter_experiments(status, name, filter=filter, sort=sort):
            row = {k: e.get(k) for k in ("id", "name", "status", "created_at", "finished_at")}
            summary = e.get("summary") or {}
            row |= {f"metrics.{k}": v for k, v in (summary.get("metrics") or {}).items()}
            row |= {f"tags.{k}": v for k, v in (e.get("tags") or {}).items()}
            rows.append(row)
        return pd.DataFrame(rows, columns=None if rows else ["id", "name", "status"])

    def metrics_frame(
        self,
        experiment_id: str,
        keys: Sequence[str] | str | None = None,
        max_points: int | None = None,
    ) -> pandas.DataFrame:
        """The metric series as a long table: ``key, step, value``."""
        pd = _pandas()
        series = self.metrics(experiment_id, keys, max_points)
        rows = [(k, p["step"], p["value"]) for k, points in series.items() for p in points]
        return pd.DataFrame(rows, columns=["key", "step", "value"])

    def sweep_frame(
        self, sweep_id: str, keys: Sequence[str] | str | None = None
    ) -> pandas.DataFrame:
        """The sweep's results table: one row per configuration, its parameters, ``n`` and each
        metric's mean and 95% interval (``<key>``, ``<key>.ci_low``, ``<key>.ci_high``)."""
        pd = _pandas()
        results = self.sweep(sweep_id, keys)["results"]
        rows = []
        for r in results["table"]:
            row: dict[str, Any] = {"config": r["config"], **r["params"], "n": r["n"]}
            for key, est in r["metrics"].items():
                est = est or {}
                row |= {key: est.get("mean"), f"{key}.ci_low": est.get("ci_low")}
                row[f"{key}.ci_high"] = est.get("ci_high")
            rows.append(row)
        return pd.DataFrame(rows)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the install
        raise RegLabError(
            "DataFrames need pandas: pip install 'reglab[client]' (or pandas)"
        ) from None
    return pandas
