"""A sweep request, expanded into one validated experiment spec per configuration and seed.

Every spec goes through ``regcore.spec.parse_spec`` before anything is stored, so a sweep whose
space can produce an invalid spec (a ``dropout.p`` of 1.5, an index past the end of
``regularizers``) is refused as a whole with the field that is wrong: ``space.<path>`` when a
space dimension caused it, ``factors[i]...`` for a factor, ``base.<field>`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from regcore.spec import ExperimentSpec, SpecError, parse_spec
from service.sweeps.space import (
    SpaceError,
    factorial_points,
    grid_points,
    parse_space,
    random_points,
    set_path,
)

#: one sweep launches at most this many experiments (configurations × seeds).
MAX_EXPERIMENTS = 1000
MAX_FACTORS = 6
METRIC_KEY = r"^[a-z][a-z0-9_]{0,99}$"


class MedianRule(BaseModel):
    """Stop a trial whose best value so far is worse than the median of the other trials'
    running averages at the same epoch (Golovin et al., Google Vizier, 2017)."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["median"]
    grace_epochs: int = Field(2, ge=1, description="never stop before this epoch")
    min_trials: int = Field(3, ge=1, description="other trials needed at that epoch to judge")


class ASHARule(BaseModel):
    """Asynchronous successive halving (Li et al., 2020): at rungs ``min_epochs * rf**k`` a trial
    continues only while it is in the top ``1/rf`` of the trials that reached the rung."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["asha"]
    min_epochs: int = Field(1, ge=1, description="the first rung")
    reduction_factor: int = Field(3, ge=2, le=16, description="keep the top 1/rf at each rung")


class OptunaPrunerRule(BaseModel):
    """Search sweeps: Optuna's successive-halving or Hyperband pruner on the per-epoch metric
    (``service.sweeps.search.prune``)."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["successive_halving", "hyperband"]
    min_epochs: int = Field(1, ge=1, description="the first rung")
    reduction_factor: int = Field(3, ge=2, le=16, description="keep the top 1/rf at each rung")


EarlyStopping = Annotated[MedianRule | ASHARule | OptunaPrunerRule, Field(discriminator="rule")]


class SweepRequest(BaseModel):
    """The body of ``POST /v1/sweeps``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("sweep", min_length=1, max_length=150)
    base: dict[str, Any] = Field(description="the experiment spec every point starts from")
    space: dict[str, Any] = Field(
        default_factory=dict,
        description='spec path -> list of values, or {"uniform"|"log_uniform"|"int_uniform": '
        "[low, high]}",
        max_length=32,
    )
    method: Literal["grid", "random", "factorial", "search"] = "grid"
    trials: int | None = Field(
        None, ge=1, le=MAX_EXPERIMENTS, description="random: points; search: the trial budget"
    )
    sampler: Literal["tpe", "random", "cmaes"] = Field("tpe", description="search: Optuna's")
    budget_seconds: float | None = Field(
        None, gt=0, description="search: ask no new trials this long after the sweep started"
    )
    search_seed: int = Field(0, ge=0, le=2**31 - 1, description="random: seed of the draws")
    factors: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_FACTORS,
        description="factorial: regularizers, each appended to base.regularizers when on",
    )
    seeds: int | list[int] = Field(
        1, description="replicates of every point: a count (base.seed, +1, ...) or the seeds"
    )
    max_concurrent: int = Field(4, ge=1, le=MAX_EXPERIMENTS)
    metric: str = Field("val_loss", pattern=METRIC_KEY, description="what 'best' means")
    mode: Literal["min", "max"] | None = Field(None, description="default: max for *acc*")
    early_stopping: EarlyStopping | None = None

    @model_validator(mode="after")
    def _method_fields(self) -> SweepRequest:
        if self.method == "random" and self.trials is None:
            raise ValueError("method random needs trials (how many points to draw)")
        if self.method not in ("random", "search") and self.trials is not None:
            raise ValueError("trials applies to methods random and search only")
        if self.method == "search" and self.trials is None and self.budget_seconds is None:
            raise ValueError("method search needs a budget: trials and/or budget_seconds")
        if self.method != "search" and self.budget_seconds is not None:
            raise ValueError("budget_seconds applies to method search only")
        rule = self.early_stopping.rule if self.early_stopping else None
        if rule in ("successive_halving", "hyperband") and self.method != "search":
            raise ValueError(f"early_stopping rule {rule} applies to method search (use asha)")
        train = self.base.get("train")
        steps = (isinstance(train, dict) and train.get("steps") is not None) or (
            "train.steps" in self.space
        )
        if self.early_stopping is not None and steps:
            raise ValueError(
                "early_stopping: its rungs and grace period count epochs, and a train.steps "
                "budget reports at step numbers; budget the trials in epochs, or drop it"
            )
        if self.method == "search" and self.seeds != 1:
            raise ValueError("seeds: method search runs each configuration once (seeds 1)")
        if self.method == "factorial":
            if not self.factors:
                raise ValueError("method factorial needs factors (regularizers to switch)")
            if self.space:
                raise ValueError("method factorial switches factors; leave space empty")
        elif self.factors:
            raise ValueError("factors apply to method factorial only")
        if isinstance(self.seeds, int) and not 1 <= self.seeds <= 100:
            raise ValueError("seeds: a count from 1 to 100, or a list of seeds")
        if isinstance(self.seeds, list) and (
            not 1 <= len(self.seeds) <= 100
            or len(set(self.seeds)) != len(self.seeds)
            or any(not 0 <= s <= 2**31 - 1 for s in self.seeds)
        ):
            raise ValueError("seeds: 1 to 100 distinct seeds from 0 to 2**31 - 1")
        return self

    @property
    def direction(self) -> Literal["min", "max"]:
        return self.mode or default_mode(self.metric)


def default_mode(metric: str) -> Literal["min", "max"]:
    return "max" if "acc" in metric else "min"


@dataclass(frozen=True)
class Trial:
    config: int
    seed: int
    spec: ExperimentSpec


@dataclass(frozen=True)
class Plan:
    #: per configuration, its parameters: ``{path: value}``, or ``{factor: on}`` (factorial).
    configs: list[dict[str, Any]]
    #: configuration-major, seeds inner: a sweep's first experiments cover few configurations
    #: with all their seeds, so early results already carry confidence intervals.
    trials: list[Trial]
    factors: list[str]


class PlanError(ValueError):
    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _seeds(req: SweepRequest) -> list[int]:
    if isinstance(req.seeds, list):
        return list(req.seeds)
    first = req.base.get("seed", 0)
    first = first if isinstance(first, int) and not isinstance(first, bool) else 0
    return [first + i for i in range(req.seeds)]


def expand(req: SweepRequest) -> Plan:
    """The sweep's configurations and its experiments; raises ``PlanError`` naming the fields."""
    try:
        parse_spec(req.base)
    except SpecError as err:
        raise PlanError(
            [{"field": f"base.{e['field']}", "message": e["message"]} for e in err.errors]
        ) from None
    factors: list[str] = []
    try:
        if req.method == "factorial":
            factors = _factor_names(req.factors)
            configs: list[dict[str, Any]] = list(factorial_points(factors))
        else:
            if req.method == "search":
                from service.sweeps import search

                sspace = search.parse_search_space(req.space)
                first = min(req.max_concurrent, req.trials or MAX_EXPERIMENTS)
                props = search.propose(
                    sspace, [], first, req.direction, req.sampler, req.search_seed
                )
                return _search_plan(req, sspace, [p.config for p in props])
            space = parse_space(req.space)
            if req.method == "grid":
                configs = grid_points(space) if space else [{}]
            else:
                configs = random_points(space, req.trials or 1, req.search_seed)
    except SpaceError as err:
        raise PlanError([{"field": err.field, "message": err.message}]) from None
    seeds = _seeds(req)
    total = len(configs) * len(seeds)
    if total > MAX_EXPERIMENTS:
        raise PlanError(
            [
                {
                    "field": "seeds" if len(configs) <= MAX_EXPERIMENTS else "space",
                    "message": f"{len(configs)} configurations x {len(seeds)} seeds = {total} "
                    f"experiments; a sweep runs at most {MAX_EXPERIMENTS}",
                }
            ]
        )
    trials: list[Trial] = []
    errors: list[dict[str, str]] = []
    for i, params in enumerate(configs):
        try:
            data = _config_spec(req, params)
        except SpaceError as err:
            raise PlanError([{"field": err.field, "message": err.message}]) from None
        for seed in seeds:
            data = {**data, "seed": seed, "name": f"{req.name}/c{i}/s{seed}"}
            try:
                trials.append(Trial(i, seed, parse_spec(data)))
            except SpecError as err:
                errors.extend(_blame(req, params, e) for e in err.errors)
                break  # one report per configuration is enough
        if len(errors) >= 20:
            break
    if errors:
        raise PlanError(errors)
    return Plan(configs, trials, factors)


def _search_plan(req: SweepRequest, space: Any, configs: list[dict[str, Any]]) -> Plan:
    """A search sweep's first trials (the scheduler asks for the rest as they end)."""
    from service.sweeps.search import config_spec

    trials = []
    for i, config in enumerate(configs):
        data = {**config_spec(req.base, space, config), "seed": _seeds(req)[0]}
        data["name"] = f"{req.name}/c{i}/s{data['seed']}"
        try:
            trials.append(Trial(i, data["seed"], parse_spec(data)))
        except SpecError as err:
            raise PlanError([_blame(req, config, e) for e in err.errors]) from None
    return Plan(configs, trials, [])


def _factor_names(factors: list[dict[str, Any]]) -> list[str]:
    names = []
    for i, factor in enumerate(factors):
        name = factor.get("name")
        if not isinstance(name, str):
            raise SpaceError(f"factors[{i}].name", "each factor is a regularizer with a name")
        if name in names:
            raise SpaceError(
                f"factors[{i}].name", f"{name!r} appears twice; each factor is switched as a whole"
            )
        names.append(name)
    return names


def _config_spec(req: SweepRequest, params: dict[str, Any]) -> dict[str, Any]:
    if req.method == "factorial":
        regs = list(req.base.get("regularizers") or [])
        regs += [f for f in req.factors if params[f["name"]]]
        return {**req.base, "regularizers": regs}
    data = req.base
    for path, value in params.items():
        data = set_path(data, path, value)
    return data


def _blame(req: SweepRequest, params: dict[str, Any], error: dict[str, str]) -> dict[str, str]:
    """Point an error in a generated spec at what made it: a space path, a factor, or the base."""
    field = error["field"]
    shown = {k: v for k, v in params.items()}
    message = f"{error['message']} (at configuration {shown})"
    for path in params if req.method != "factorial" else ():
        if field == path or field.startswith((path + ".", path + "[")) or path.startswith(field):
            return {"field": f"space.{path}", "message": message}
    if req.method == "factorial" and field.startswith("regularizers["):
        n_base = len(req.base.get("regularizers") or [])
        index = int(field[len("regularizers[") : field.index("]")])
        if index >= n_base:
            on = [f for f in req.factors if params[f["name"]]]
            k = req.factors.index(on[index - n_base])
            return {"field": f"factors[{k}]{field[field.index(']') + 1 :]}", "message": message}
    return {"field": f"base.{field}", "message": message}
