"""A small Python client of the RegLab REST API (httpx only; no FastAPI, no torch).

    from service.client import RegLabClient
    with RegLabClient() as lab:                       # REGLAB_API_URL, or http://127.0.0.1:8000
        exp = lab.submit(spec_dict, idempotency_key="my-run-1")
        done = lab.wait(exp["id"], timeout=600, on_progress=lambda e: print(e["progress"]))
        curves = lab.metrics(exp["id"], keys=["train_loss", "val_loss"], max_points=200)

``api_key`` is sent as ``Authorization: Bearer <key>``; the client never reads it from the
environment (the CLIs take ``--api-key`` / ``REGLAB_API_KEY`` and pass it).

Every non-2xx answer raises ``RegLabAPIError`` (``NotFoundError`` for 404, ``InvalidSpecError``
for 422) carrying the status and the server's JSON error body.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
#: JSON objects; spelled here because ``RegLabClient.list`` shadows the builtin in the class.
Items = list[dict[str, Any]]


class RegLabError(Exception):
    """Anything that went wrong talking to the service."""


class RegLabConnectionError(RegLabError):
    """The server could not be reached."""


class RegLabAPIError(RegLabError):
    """The server answered with an error status; ``body`` is its JSON error body."""

    def __init__(self, status: int, body: Any, method: str = "", url: str = ""):
        self.status = status
        self.body = body
        self.error = body.get("error") if isinstance(body, dict) else None
        self.detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"{method} {url} -> {status}: {self._describe()}".strip())

    def _describe(self) -> str:
        if isinstance(self.detail, list):
            parts = [
                f"{d.get('field')}: {d.get('message')}" if isinstance(d, dict) else str(d)
                for d in self.detail
            ]
            return f"{self.error or 'error'}: " + "; ".join(parts)
        if self.error and self.detail and self.detail != self.error:
            return f"{self.error}: {self.detail}"
        return str(self.error or self.detail or "no error body")


class NotFoundError(RegLabAPIError):
    """404: no such experiment or checkpoint."""


class InvalidSpecError(RegLabAPIError):
    """422: the spec (or request) failed validation; ``fields`` lists the offending paths."""

    @property
    def fields(self) -> list[str]:
        if isinstance(self.detail, list):
            return [d.get("field", "") for d in self.detail if isinstance(d, dict)]
        return []


class WaitTimeout(RegLabError, TimeoutError):
    """``wait`` gave up before the experiment ended; ``experiment`` is the last state seen."""

    def __init__(self, experiment: dict[str, Any], timeout: float):
        self.experiment = experiment
        super().__init__(
            f"experiment {experiment.get('id')} still {experiment.get('status')} after {timeout}s"
        )


def _error_for(response: httpx.Response) -> RegLabAPIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = {"error": response.reason_phrase, "detail": response.text[:500]}
    cls = {404: NotFoundError, 422: InvalidSpecError}.get(response.status_code, RegLabAPIError)
    return cls(response.status_code, body, response.request.method, str(response.request.url))


class RegLabClient:
    """Synchronous client. ``http`` lets tests pass their own ``httpx.Client`` (e.g. TestClient)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ):
        if base_url is None and http is not None:
            base_url = str(http.base_url)
        base_url = base_url or os.environ.get("REGLAB_API_URL") or DEFAULT_API_URL
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json"}
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

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RegLabConnectionError(
                f"cannot reach the RegLab API at {self.base_url}: {exc} "
                "(is `reglab serve` running? set REGLAB_API_URL to point elsewhere)"
            ) from exc
        if response.is_error:
            raise _error_for(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- experiments --------------------------------------------------------------------------

    def submit(
        self, spec: dict[str, Any] | str | Path | Any, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Queue an experiment. ``spec``: a dict, a pydantic spec, or a path to a JSON file."""
        if isinstance(spec, str | Path):
            spec = json.loads(Path(spec).read_text())
        elif hasattr(spec, "model_dump"):
            spec = spec.model_dump(mode="json")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/experiments", json=spec, headers=headers)

    def get(self, experiment_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/experiments/{experiment_id}")

    def list(
        self,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: ``{"items": [...], "next_cursor": ...}`` (newest first)."""
        params = {"status": status, "name": name, "limit": limit, "cursor": cursor}
        return self._json(
            "GET", "/v1/experiments", params={k: v for k, v in params.items() if v is not None}
        )

    def iter_experiments(
        self, status: str | None = None, name: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every matching experiment, following the cursor."""
        cursor = None
        while True:
            page = self.list(status=status, name=name, limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel(self, experiment_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/experiments/{experiment_id}/cancel")

    def wait(
        self,
        experiment_id: str,
        timeout: float | None = None,
        poll: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
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
    ) -> dict[str, Items]:
        """``{key: [{"step": s, "value": v}, ...]}``."""
        params: dict[str, Any] = {}
        if keys:
            params["keys"] = keys if isinstance(keys, str) else ",".join(keys)
        if max_points:
            params["max_points"] = max_points
        return self._json("GET", f"/v1/experiments/{experiment_id}/metrics", params=params)[
            "series"
        ]

    def checkpoints(self, experiment_id: str) -> Items:
        return self._json("GET", f"/v1/experiments/{experiment_id}/checkpoints")["items"]

    def download_checkpoint(
        self, experiment_id: str, checkpoint_id: str, path: str | Path, sha256: str | None = None
    ) -> Path:
        """Stream the safetensors file to ``path`` (a folder gets a default name).

        The file appears only once complete; with ``sha256`` its digest is checked too.
        """
        path = Path(path)
        if path.is_dir():
            path = path / f"{experiment_id}-{checkpoint_id}.safetensors"
        url = f"/v1/experiments/{experiment_id}/checkpoints/{checkpoint_id}/file"
        partial = path.with_name(path.name + ".part")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", url) as response:
                if response.is_error:
                    response.read()
                    raise _error_for(response)
                with partial.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        digest.update(chunk)
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

    # --- catalog and health -------------------------------------------------------------------

    def regularizers(self) -> Items:
        return self._json("GET", "/v1/regularizers")["items"]

    def datasets(self) -> Items:
        return self._json("GET", "/v1/datasets")["items"]

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        return self._json("GET", "/readyz")
