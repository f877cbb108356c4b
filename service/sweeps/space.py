"""Search spaces over spec paths, and the points of grid, random and factorial sweeps.

A space maps a path into the experiment spec to a dimension::

    {"regularizers[0].strength": {"log_uniform": [1e-5, 1e-1]},
     "regularizers[1].p": [0.0, 0.25, 0.5],
     "train.lr": {"uniform": [0.01, 0.1]},
     "model.hidden[0]": {"int_uniform": [16, 128]}}

A list is a choice among its values; ``uniform`` and ``log_uniform`` draw a float in ``[a, b]``
(``log_uniform`` uniformly in ``log``, so each decade is equally likely); ``int_uniform`` an
integer in ``[a, b]``, both ends included. Grid sweeps take lists only (a grid over a continuous
range is a choice the user should spell out).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from dataclasses import dataclass
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"{_NAME}(\[\d{{1,4}}\])*(\.{_NAME}(\[\d{{1,4}}\])*)*")
_TOKEN = re.compile(rf"({_NAME})|\[(\d+)\]")
MAX_PATH = 200


class SpaceError(ValueError):
    """A space that cannot be used; ``field`` names where (e.g. ``space.train.lr``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def parse_path(path: str) -> list[str | int]:
    """``regularizers[0].strength`` → ``["regularizers", 0, "strength"]``."""
    if not isinstance(path, str) or not _PATH.fullmatch(path) or len(path) > MAX_PATH:
        raise SpaceError(
            f"space.{str(path)[:MAX_PATH]}",
            "not a spec path; write fields joined by dots and list indices in brackets, "
            "e.g. regularizers[0].strength",
        )
    return [name if name else int(index) for name, index in _TOKEN.findall(path)]


def set_path(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``spec`` with ``value`` at ``path``. Lists on the way must hold the index
    (a regularizer must be in the base spec to vary it); an omitted object is created empty."""
    out = copy.deepcopy(spec)
    parts = parse_path(path)
    node: Any = out
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = _render(parts[:i]) or "the spec"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise SpaceError(f"space.{path}", f"{where} is not a list in the base spec")
            if part >= len(node):
                raise SpaceError(
                    f"space.{path}",
                    f"{where} has {len(node)} entries in the base spec; no index {part}",
                )
        else:
            if not isinstance(node, dict):
                raise SpaceError(f"space.{path}", f"{where} is not an object in the base spec")
            if not last and part not in node:
                if isinstance(parts[i + 1], int):
                    raise SpaceError(
                        f"space.{path}",
                        f"{_render(parts[: i + 1])} is not in the base spec; spell it out there",
                    )
                node[part] = {}  # an omitted section (train, say) holds its defaults
        if last:
            node[part] = value
        else:
            node = node[part]
    return out


def _render(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# --- dimensions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return copy.deepcopy(self.values[rng.randrange(len(self.values))])


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        # exp(log(x)) can land a hair outside the range
        return min(max(value, self.low), self.high)


@dataclass(frozen=True)
class IntUniform:
    low: int
    high: int

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)


Dimension = Choice | Uniform | LogUniform | IntUniform
KINDS = ("uniform", "log_uniform", "int_uniform")


def _finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_dimension(path: str, raw: Any) -> Dimension:
    field = f"space.{path}"
    if isinstance(raw, list):
        if not raw:
            raise SpaceError(field, "a list of values needs at least one value")
        return Choice(tuple(raw))
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        raise SpaceError(
            field,
            "expected a list of values or one of "
            + ", ".join(f'{{"{k}": [low, high]}}' for k in KINDS),
        )
    kind, bounds = next(iter(raw.items()))
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(_finite_number, bounds))):
        raise SpaceError(field, f"{kind} takes [low, high], two finite numbers")
    low, high = bounds
    if not low < high:
        raise SpaceError(field, f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "uniform":
        return Uniform(float(low), float(high))
    if kind == "log_uniform":
        if low <= 0:
            raise SpaceError(field, f"log_uniform needs 0 < low, got {low}")
        return LogUniform(float(low), float(high))
    if not (float(low).is_integer() and float(high).is_integer()):
        raise SpaceError(field, f"int_uniform takes integer bounds, got [{low}, {high}]")
    return IntUniform(int(low), int(high))


def parse_space(raw: dict[str, Any]) -> dict[str, Dimension]:
    space = {}
    for path, dim in raw.items():
        parse_path(path)
        space[path] = parse_dimension(path, dim)
    return space


# --- points -----------------------------------------------------------------------------------


def grid_points(space: dict[str, Dimension]) -> list[dict[str, Any]]:
    """Every combination, the last path varying fastest (like nested loops in path order)."""
    for path, dim in space.items():
        if not isinstance(dim, Choice):
            raise SpaceError(
                f"space.{path}",
                "a grid needs a list of values here; ranges are for method random",
            )
    paths = list(space)
    values = [space[p].values for p in paths]  # type: ignore[union-attr]
    return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*values)]


def random_points(space: dict[str, Dimension], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` independent draws; the same seed draws the same points."""
    rng = random.Random(seed)
    return [{path: dim.sample(rng) for path, dim in space.items()} for _ in range(trials)]


def factorial_points(factors: list[str]) -> list[dict[str, bool]]:
    """All 2^n on/off combinations, the first factor varying slowest (all off first)."""
    return [
        dict(zip(factors, combo, strict=True))
        for combo in itertools.product((False, True), repeat=len(factors))
    ]
