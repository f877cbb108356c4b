"""``GET /v1/compare``: experiments side by side (summaries, final metrics, aligned series)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.api import schemas
from service.api.auth import OwnerDep
from service.api.deps import SessionDep
from service.api.query import ids_param, keys_param
from service.api.routes.experiments import _experiment
from service.api.views import experiment_view, finite
from service.db import experiments as experiments_repo
from service.sweeps.stats import metric_keys

router = APIRouter(prefix="/v1", tags=["compare"])

#: like MLflow's run comparison: more than this many runs side by side is refused.
MAX_COMPARE = 100


def aligned(
    series: dict[str, dict[str, list[tuple[int, float]]]], keys: list[str], max_points: int
) -> dict[str, Any]:
    """Per key, the union of the experiments' steps and each one's value at those steps (null
    where it has none); more steps than ``max_points`` are thinned evenly, first and last kept."""
    out: dict[str, Any] = {}
    for key in keys:
        steps = sorted({s for by_key in series.values() for s, _ in by_key.get(key, [])})
        if len(steps) > max_points:
            idx = sorted(
                {round(i * (len(steps) - 1) / (max_points - 1)) for i in range(max_points)}
            )
            steps = [steps[i] for i in idx]
        values = {}
        for eid, by_key in series.items():
            at = dict(by_key.get(key, []))
            values[eid] = [at.get(s) for s in steps]
        out[key] = {"steps": steps, "values": values}
    return out


@router.get("/compare", response_model=schemas.Comparison, responses={404: {}, 422: {}})
def compare_experiments(
    session: SessionDep,
    owner: OwnerDep,
    ids: Annotated[
        list[str],
        Query(description=f"experiment ids (comma-separated or repeated; at most {MAX_COMPARE})"),
    ],
    keys: Annotated[
        str | None, Query(description="metric series to align (default train_loss,val_loss)")
    ] = None,
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 500,
) -> dict[str, Any]:
    """Experiments side by side: their summaries, a table of final metrics (key → id → value),
    and the per-epoch series of ``keys`` aligned on a common list of steps."""
    wanted = ids_param(ids, MAX_COMPARE)
    rows = [_experiment(session, eid, owner) for eid in wanted]
    series_keys = keys_param(keys) or ["train_loss", "val_loss"]
    series = {r.id: experiments_repo.metrics(session, r.id, series_keys) for r in rows}
    table_keys = metric_keys(r.summary for r in rows)
    table = {
        k: {r.id: ((r.summary or {}).get("metrics") or {}).get(k) for r in rows} for k in table_keys
    }
    return finite(
        {
            "items": [experiment_view(r) for r in rows],
            "table": table,
            "series": aligned(series, series_keys, max_points),
        }
    )
