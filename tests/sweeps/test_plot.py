"""The server-side sweep plots: a log x axis for log-spaced strengths (also within a decade),
bands clipped to the range the metric can take, a calibration window around the points."""

from __future__ import annotations

import math

import pytest

from service.sweeps.plot import line_figure, log_spaced, metric_range, reliability_figure


@pytest.mark.parametrize(
    ("values", "log"),
    [
        ([1e-4, 1e-3, 1e-2], True),
        ([1e-3, 2e-3, 4e-3, 8e-3], True),  # geometric within one decade
        ([1e-4, 1e-4, 1e-3, 1e-3, 1e-2], True),  # repeated across groups
        ([0.1, 0.2, 0.3, 0.4], False),  # evenly spaced
        ([0.0, 1e-3, 1e-2], False),  # zero has no log
        ([0.5, 0.6], False),
        ([-1e-3, 1e-3], False),
        (["a", "b"], False),
    ],
)
def test_log_spaced(values, log):
    assert log_spaced(values) is log


def test_metric_range():
    assert metric_range("test_acc") == (0.0, 1.0)
    assert metric_range("ece") == (0.0, 1.0)
    assert metric_range("val_loss") == (0.0, math.inf)
    assert metric_range("gen_gap") == (-math.inf, math.inf)


def row(strength, mean, low, high):
    est = {"mean": mean, "ci_low": low, "ci_high": high, "n": 2}
    return {"params": {"l2": strength}, "metrics": {"test_acc": est}}


def test_line_plot_has_a_log_axis_and_an_accuracy_band_inside_zero_and_one():
    table = [row(1e-4, 0.95, 0.80, 1.10), row(1e-3, 0.9, 0.7, 1.05), row(1e-2, 0.05, -0.2, 0.3)]
    ax = line_figure(table, "l2", "test_acc").axes[0]
    assert ax.get_xscale() == "log"
    (band,) = ax.collections
    ys = [y for path in band.get_paths() for _, y in path.vertices]
    assert max(ys) == pytest.approx(1.0) and min(ys) == pytest.approx(0.0)


def test_linear_strengths_stay_on_a_linear_axis():
    table = [row(0.1, 0.8, 0.7, 0.9), row(0.2, 0.8, 0.7, 0.9), row(0.3, 0.8, 0.7, 0.9)]
    assert line_figure(table, "l2", "test_acc").axes[0].get_xscale() == "linear"


def test_reliability_window_spans_the_points_not_the_unit_square():
    def cfg(conf, acc):
        one = lambda m: {"mean": m, "ci_low": m - 0.01, "ci_high": m + 0.01, "n": 2}  # noqa: E731
        return {"params": {}, "metrics": {"confidence": one(conf), "test_acc": one(acc)}}

    ax = reliability_figure([cfg(0.91, 0.9), cfg(0.93, 0.92)]).axes[0]
    lo, hi = ax.get_xlim()
    assert 0.8 < lo < 0.9 and 0.93 < hi < 1.0
    assert ax.get_ylim() == ax.get_xlim()
