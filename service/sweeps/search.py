"""``method: "search"``: a sampler that proposes the next trials from the results so far.

Optuna's ask-and-tell interface over an **in-memory study rebuilt from the sweep's own rows**
each time the scheduler needs trials (see docs/sweeps.md, "Search"): the trials already run are
added with their parameters, final value and per-epoch values; the ones still running are asked
again with their parameters fixed; then ``n`` new trials are asked. Nothing of Optuna's is stored:
the experiment rows stay the one record, and there is no second schema to migrate.

The space is the sweep's ``space`` (spec paths → dimensions, as ``service.sweeps.space``) plus
an optional ``regularizers`` entry: catalog regularizer name → its parameters, each a dimension
or a constant. Each such regularizer is switched on or off by the sampler (parameter
``on.<name>``), and its parameters exist only when it is on (``<name>.<param>``)::

    {"train.lr": {"log_uniform": [0.01, 0.3]},
     "regularizers": {"l2": {"strength": {"log_uniform": [1e-5, 1e-2]}},
                      "label_smoothing": {"epsilon": {"uniform": [0.0, 0.3]}},
                      "early_stopping": {"patience": [3, 10], "monitor": "val_loss"}}}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from service.sweeps.space import (
    Choice,
    Dimension,
    IntUniform,
    LogUniform,
    SpaceError,
    Uniform,
    parse_dimension,
    parse_path,
    set_path,
)

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("successive_halving", "hyperband")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class SearchSpace:
    paths: dict[str, Dimension]  # spec path -> dimension (always present)
    #: regularizer name -> {param: dimension or constant}; the params exist when it is on
    cocktail: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_search_space(raw: Mapping[str, Any]) -> SearchSpace:
    paths: dict[str, Dimension] = {}
    cocktail: dict[str, dict[str, Any]] = {}
    for path, dim in raw.items():
        if path == "regularizers":
            if not isinstance(dim, Mapping) or not dim:
                raise SpaceError(
                    "space.regularizers",
                    "search: a mapping of regularizer name -> its parameters (dimensions or "
                    "constants), each regularizer switched on or off by the sampler",
                )
            for name, params in dim.items():
                if not isinstance(params, Mapping):
                    raise SpaceError(f"space.regularizers.{name}", "a mapping of parameters")
                cocktail[name] = {
                    p: _dim_or_constant(f"regularizers.{name}.{p}", v) for p, v in params.items()
                }
            continue
        parse_path(path)
        paths[path] = parse_dimension(path, dim)
    if not paths and not cocktail:
        raise SpaceError("space", "search needs at least one dimension or regularizer to switch")
    return SearchSpace(paths, cocktail)


def _dim_or_constant(where: str, raw: Any) -> Any:
    if isinstance(raw, list) or isinstance(raw, Mapping):
        return parse_dimension(where, raw)
    return raw


def _suggest(trial: optuna.Trial, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Choice):
        # Optuna's categorical values must be plain scalars; others are chosen by index
        plain = all(v is None or isinstance(v, bool | int | float | str) for v in dim.values)
        if plain:
            return trial.suggest_categorical(name, list(dim.values))
        return dim.values[trial.suggest_int(f"{name}#", 0, len(dim.values) - 1)]
    if isinstance(dim, Uniform):
        return trial.suggest_float(name, dim.low, dim.high)
    if isinstance(dim, LogUniform):
        return trial.suggest_float(name, dim.low, dim.high, log=True)
    assert isinstance(dim, IntUniform)
    return trial.suggest_int(name, dim.low, dim.high)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One configuration, define-by-run: ``{path: value}`` and, per switched regularizer,
    ``on.<name>`` and (when on) ``<name>.<param>``."""
    params: dict[str, Any] = {}
    for path, dim in space.paths.items():
        params[path] = _suggest(trial, path, dim)
    for name, rparams in space.cocktail.items():
        on = trial.suggest_categorical(f"on.{name}", [False, True])
        params[f"on.{name}"] = on
        if on:
            for p, v in rparams.items():
                key = f"{name}.{p}"
                params[key] = _suggest(trial, key, v) if isinstance(v, Dimension) else v
    return params


def config_spec(base: Mapping[str, Any], space: SearchSpace, params: Mapping[str, Any]) -> dict:
    """The experiment spec of one configuration: paths set, switched-on regularizers appended
    to ``base.regularizers`` with their parameters."""
    data: dict[str, Any] = dict(base)
    for path in space.paths:
        data = set_path(data, path, params[path])
    regs = list(data.get("regularizers") or [])
    for name, rparams in space.cocktail.items():
        if params.get(f"on.{name}"):
            regs.append({"name": name, **{p: params[f"{name}.{p}"] for p in rparams}})
    data["regularizers"] = regs
    return data


@dataclass(frozen=True)
class Past:
    """One trial of the sweep as its rows tell it."""

    params: dict[str, Any]  # Optuna's parameters (``Proposal.params``)
    state: str  # complete | pruned | failed | running
    value: float | None = None  # the final objective (complete)
    curve: dict[int, float] = field(default_factory=dict)  # epoch -> metric value


def _sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        with warnings.catch_warnings():  # multivariate and group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True,
                                              group=True, constant_liar=True)  # fmt: skip
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        # CMA-ES samples the always-present numeric dimensions jointly; on/off switches and
        # conditional strengths go to its independent (TPE) sampler.
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            independent_sampler=optuna.samplers.TPESampler(seed=seed),
            warn_independent_sampling=False,
        )
    raise ValueError(f"sampler {kind!r}: expected one of {SAMPLERS}")


def _pruner(kind: str | None, min_epochs: int, rf: int) -> optuna.pruners.BasePruner:
    if kind is None:
        return optuna.pruners.NopPruner()
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=rf)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_epochs, reduction_factor=rf)
    raise ValueError(f"pruner {kind!r}: expected one of {PRUNERS}")


def rebuild(
    space: SearchSpace,
    past: Sequence[Past],
    direction: str,
    sampler: str = "tpe",
    seed: int = 0,
    pruner: str | None = None,
    min_epochs: int = 1,
    reduction_factor: int = 3,
) -> tuple[optuna.Study, list[tuple[optuna.Trial, bool]]]:
    """The in-memory study of the sweep so far, and the live trials of its running ones with
    whether the pruner stops each (in the order of ``past``'s running entries). The sampler's
    seed moves with the number of trials, so each rebuild draws afresh but the same rows always
    give the same proposals."""
    study = optuna.create_study(
        direction="maximize" if direction == "max" else "minimize",
        sampler=_sampler(sampler, seed * 1_000_003 + len(past)),
        pruner=_pruner(pruner, min_epochs, reduction_factor),
    )
    dists = _template_distributions(space)
    finished = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
                "failed": TrialState.FAIL}  # fmt: skip
    running: list[Past] = []
    for p in past:
        if p.state not in finished:
            running.append(p)
            continue
        value = p.value if p.state == "complete" and p.value is not None else None
        state = finished[p.state] if value is not None or p.state != "complete" else TrialState.FAIL
        if value is not None and not math.isfinite(value):
            value, state = None, TrialState.FAIL
        if pruner is not None and p.curve:
            # replayed: the pruner keeps its rung values on the trials it has seen judged
            t, _ = _replay(study, space, p)
            study.tell(t, value, state=state)
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=p.params,
                distributions={k: dists[k] for k in p.params},
                value=value,
                state=state,
                intermediate_values=dict(p.curve),
            )
        )
    return study, [_replay(study, space, p) for p in running]


def _replay(study: optuna.Study, space: SearchSpace, p: Past) -> tuple[optuna.Trial, bool]:
    """A live trial with ``p``'s parameters and its per-epoch values reported in order, the
    pruner asked after each (as a worker reporting live would have; the pruner writes its rung
    values on the trial as it judges); and whether the pruner stopped it."""
    study.enqueue_trial(p.params, skip_if_exists=False)
    t = study.ask()
    suggest(t, space)
    for step, v in sorted(p.curve.items()):
        if math.isfinite(v):
            t.report(v, step)
            if t.should_prune():
                return t, True
    return t, False


def _template_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}

    def add(name: str, dim: Dimension) -> None:
        if isinstance(dim, Choice):
            plain = all(v is None or isinstance(v, bool | int | float | str) for v in dim.values)
            if plain:
                out[name] = CategoricalDistribution(list(dim.values))
            else:
                out[f"{name}#"] = IntDistribution(0, len(dim.values) - 1)
        elif isinstance(dim, Uniform):
            out[name] = FloatDistribution(dim.low, dim.high)
        elif isinstance(dim, LogUniform):
            out[name] = FloatDistribution(dim.low, dim.high, log=True)
        else:
            out[name] = IntDistribution(dim.low, dim.high)

    for path, dim in space.paths.items():
        add(path, dim)
    for name, rparams in space.cocktail.items():
        out[f"on.{name}"] = CategoricalDistribution([False, True])
        for p, v in rparams.items():
            if isinstance(v, Dimension):
                add(f"{name}.{p}", v)
    return out


@dataclass(frozen=True)
class Proposal:
    params: dict[str, Any]  # what the sampler chose (kept on the trial, to rebuild the study)
    config: dict[str, Any]  # the configuration: ``{path: value, on.<name>: bool, <name>.<p>: v}``


def propose(
    space: SearchSpace, past: Sequence[Past], n: int, direction: str, sampler: str = "tpe",
    seed: int = 0,
) -> list[Proposal]:  # fmt: skip
    """The next ``n`` configurations given the trials so far (running ones included, so a
    batch is not asked twice for the same point: TPE's constant liar)."""
    study, _ = rebuild(space, past, direction, sampler, seed)
    out = []
    for _ in range(n):
        t = study.ask()
        config = suggest(t, space)
        out.append(Proposal(dict(t.params), config))
    return out


def prune(
    space: SearchSpace, past: Sequence[Past], direction: str, pruner: str, min_epochs: int = 1,
    reduction_factor: int = 3,
) -> list[bool]:  # fmt: skip
    """For each running entry of ``past`` (in order), whether Optuna's pruner stops it now."""
    _, live = rebuild(space, past, direction, "random", 0, pruner, min_epochs, reduction_factor)
    return [stopped for _, stopped in live]


def importances(space: SearchSpace, past: Sequence[Past], direction: str) -> dict[str, float]:
    """Each parameter's importance over the completed trials: fANOVA when scikit-learn is
    installed, else PED-ANOVA (no extra dependency). Optuna rates only the parameters present
    in every completed trial: the switches ``on.<name>`` and the always-present paths, not a
    strength that exists only when its regularizer is on. Empty below 2 completed trials."""
    study, _ = rebuild(space, [p for p in past if p.state == "complete"], direction)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(done) < 2 or len({t.value for t in done}) < 2:
        return {}
    try:
        import sklearn  # noqa: F401

        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    got = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in got.items()}


def params_of(space: SearchSpace, config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler's parameters of a stored configuration (the inverse of ``suggest``)."""

    def one(name: str, dim: Dimension, v: Any) -> tuple[str, Any]:
        if isinstance(dim, Choice):
            plain = all(x is None or isinstance(x, bool | int | float | str) for x in dim.values)
            return (name, v) if plain else (f"{name}#", list(dim.values).index(v))
        return name, v

    out = dict(one(path, dim, config[path]) for path, dim in space.paths.items())
    for name, rparams in space.cocktail.items():
        out[f"on.{name}"] = bool(config.get(f"on.{name}"))
        if out[f"on.{name}"]:
            for p, v in rparams.items():
                if isinstance(v, Dimension):
                    k, x = one(f"{name}.{p}", v, config[f"{name}.{p}"])
                    out[k] = x
    return out


#: a sweep trial as the rows tell it: (configuration index, experiment status or None when not
#: launched, the experiment's summary, stop_reason)
Row = tuple[int, str | None, Mapping[str, Any] | None, str | None]
_STATES = {"succeeded": "complete", "failed": "failed", "cancelled": "failed"}


def past_of(
    space: SearchSpace,
    configs: Sequence[Mapping[str, Any]],
    rows: Sequence[Row],
    metric: str,
    curves: Sequence[Mapping[int, float]] | None = None,
) -> list[Past]:
    """The trials so far for ``rebuild``: ended (complete with the metric's final value, failed,
    or pruned when early stopping stopped it) or still to end (running); ``curves[i]``: row
    ``i``'s per-epoch values of the metric, for the pruners."""
    out = []
    for i, (config, status, summary, stop_reason) in enumerate(rows):
        curve = dict(curves[i]) if curves is not None else {}
        value = ((summary or {}).get("metrics") or {}).get(metric)
        state = "pruned" if stop_reason else _STATES.get(status or "", "running")
        if state == "complete" and not isinstance(value, int | float):
            state = "failed"
        out.append(Past(params_of(space, configs[config]), state, value, curve))
    return out


def report(request: Mapping[str, Any], configs: Sequence[Mapping[str, Any]], rows: Sequence[Row],
           metric: str, mode: str) -> dict[str, Any]:  # fmt: skip
    """What a search sweep's results add: the best configuration so far, the objective's
    history in trial order (with the best so far), and each parameter's importance."""
    space = parse_search_space(request.get("space") or {})
    past = past_of(space, configs, rows, metric)
    history, best_i, best = [], None, None
    for i, (p, row) in enumerate(zip(past, rows, strict=True)):
        if p.state == "complete" and p.value is not None and math.isfinite(p.value):
            if best is None or (p.value > best if mode == "max" else p.value < best):
                best_i, best = i, p.value
        history.append({"trial": i, "config": row[0], "state": p.state, "value": p.value,
                        "best_so_far": best})  # fmt: skip
    return {
        "sampler": request.get("sampler", "tpe"),
        "best": None if best_i is None else {
            "trial": best_i, "value": best, "config": dict(configs[rows[best_i][0]]),
        },
        "history": history,
        "importances": importances(space, past, mode),
    }  # fmt: skip
