"""effective_l2 = 1/(2·Σ_t α_t) in l2.strength units, from the rates actually taken.

It read 1/(steps x current lr) in ½λ‖w‖² units: after a step-schedule drop that is 10x too
strong, and under cosine it climbed as the rate fell.
"""

from __future__ import annotations

import math

import pytest
import torch

from regcore.training.context import RunContext
from regcore.training.driver import Outlet, load_last
from regcore.training.loop import Trainer
from tests.regcore.runs import history, make_spec, train

STEPS = 10  # 500 training examples, batches of 50


def _run(tmp_path, cache_dir, **sched):
    spec = make_spec(
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 4, "device": "cpu"}
        | sched,
        measure=["effective_l2"],
    )
    result = train(spec, tmp_path, cache_dir)
    return result, history(tmp_path)["effective_l2"]


def test_step_schedule_uses_the_sum_of_past_rates(tmp_path, cache_dir):
    result, series = _run(tmp_path, cache_dir, schedule="step", step_size=2, gamma=0.1)
    rates = [0.1, 0.1, 0.01, 0.01]  # per epoch
    sums = [STEPS * sum(rates[: e + 1]) for e in range(4)]
    assert series == pytest.approx([1 / (2 * s) for s in sums], rel=1e-6)
    assert series[-1] == pytest.approx(1 / 4.4, rel=1e-6)  # not 1/(40·0.01)
    assert result.metrics["effective_l2"] == pytest.approx(1 / 4.4, rel=1e-6)


def test_cosine_schedule_falls_monotonically(tmp_path, cache_dir):
    _, series = _run(tmp_path, cache_dir, schedule="cosine")
    rates = [0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    sums = [STEPS * sum(rates[: e + 1]) for e in range(4)]
    assert series == pytest.approx([1 / (2 * s) for s in sums], rel=1e-5)
    assert all(a > b for a, b in zip(series, series[1:], strict=False))


def _least_squares():
    g = torch.Generator().manual_seed(0)
    n, d = 200, 20
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.logspace(-1.5, 0.5, d)
    y = x @ torch.randn(d, generator=g, dtype=torch.float64)
    y = y + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return x.T @ x / n, x.T @ y / n  # mean loss (1/n)‖xw − y‖²: gradient 2(Hw − b)


@pytest.mark.parametrize(
    "rates",
    [
        [0.05] * 50,
        [0.05] * 200,
        [0.1] * 20 + [0.01] * 20,  # a step drop
        [0.05 * (1 + math.cos(math.pi * t / 100)) for t in range(100)],  # cosine
    ],
    ids=["const50", "const200", "step", "cosine"],
)
def test_early_stopped_least_squares_matches_l2_of_that_strength(rates):
    """Full-batch GD from 0 stopped after the given rates vs the ridge solutions of
    (1/n)‖xw − y‖² + λ‖w‖²: the best-matching λ is within a factor 2 of 1/(2Σα) (measured:
    0.61-0.75 of it, i.e. 0.30-0.37/(τα) for a constant rate)."""
    h, b = _least_squares()
    eye = torch.eye(h.shape[0], dtype=torch.float64)
    w = torch.zeros_like(b)
    for a in rates:
        w = w - a * 2 * (h @ w - b)
    grid = torch.logspace(-4, 2, 600, dtype=torch.float64)
    errors = torch.stack([(torch.linalg.solve(h + lam * eye, b) - w).norm() for lam in grid])
    best = float(grid[errors.argmin()])
    predicted = 1 / (2 * sum(rates))
    assert 0.5 < best / predicted < 2.0
    # the old reading, 1/(steps x last rate) (even halved into l2 units), misses the step case
    if rates[-1] != rates[0]:
        old = 1 / (2 * len(rates) * rates[-1])
        assert not 0.5 < best / old < 2.0


def test_the_sum_of_rates_survives_a_resume(tmp_path, cache_dir):
    spec = make_spec(
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 2, "device": "cpu"},
        measure=["effective_l2"],
    )
    first = Trainer(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=1)
    )
    first.run()
    assert first.lr_sum == pytest.approx(2 * STEPS * 0.1)
    again = Trainer(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=1)
    )
    assert again.lr_sum == 0.0 and load_last(again, Outlet(again.ctx))
    assert again.lr_sum == pytest.approx(first.lr_sum)
