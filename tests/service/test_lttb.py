"""LTTB downsampling."""

from __future__ import annotations

import math
import random

import pytest

from service.db.experiments import downsample
from service.lttb import lttb


@pytest.mark.parametrize("n", [3, 10, 101, 1000])
@pytest.mark.parametrize("m", [2, 3, 7, 50])
def test_lttb_keeps_first_and_last_and_at_most_max_points_in_order(n, m):
    rng = random.Random(n * 31 + m)
    points = [(i, rng.gauss(0, 1)) for i in range(n)]
    out = lttb(points, m)
    assert len(out) == min(n, m)
    assert out[0] == points[0] and out[-1] == points[-1]
    xs = [p[0] for p in out]
    assert xs == sorted(set(xs))
    assert set(out) <= set(points)


def test_lttb_keeps_a_spike_that_even_spacing_would_drop():
    points = [(i, math.sin(i / 10)) for i in range(500)]
    points[123] = (123, 50.0)
    assert (123, 50.0) in lttb(points, 20)
    even = [points[round(i * 499 / 19)] for i in range(20)]
    assert (123, 50.0) not in even


def test_a_short_series_is_returned_whole_and_the_metrics_endpoint_uses_lttb():
    points = [(1, 0.5), (2, 0.4)]
    assert lttb(points, 10) == points
    spiky = [(i, 0.0) for i in range(1, 101)]
    spiky[40] = (41, 9.0)
    assert (41, 9.0) in downsample(spiky, 10) and len(downsample(spiky, 10)) == 10


def test_a_spike_in_the_last_bucket_survives_where_the_bucket_edges_round_down():
    # (5000 - 2) / (300 - 2) * 298 is 4997.999... in floating point: the last bucket still ends
    # just before the last point, so the point next to it can be kept
    points = [(i, 0.0) for i in range(5000)]
    points[-2] = (4998, 7.0)
    out = lttb(points, 300)
    assert len(out) == 300 and (4998, 7.0) in out
