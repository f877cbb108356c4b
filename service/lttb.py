"""Largest-Triangle-Three-Buckets downsampling (Steinarsson, "Downsampling Time Series for
Visual Representation", 2013): keeps the first and last points and, from each of ``n - 2``
equal buckets in between, the point that makes the largest triangle with the point kept before
it and the mean of the next bucket, so peaks and dips survive where even spacing drops them.

``GET /v1/experiments/{id}/metrics?max_points=N`` serves its series through this (the
dashboard's run page asks for about its charts' pixel width)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import TypeVar

P = TypeVar("P", bound=tuple)


def lttb(points: Sequence[P], max_points: int) -> list[P]:
    """At most ``max_points`` of ``points`` (``(x, y, ...)`` sorted by x), in order."""
    n = len(points)
    if max_points >= n or n <= 2:
        return list(points)
    if max_points == 2:
        return [points[0], points[-1]]
    if max_points < 2:
        return [points[-1]]
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    # prefix sums: the mean of any bucket in O(1)
    sx = [0.0, *accumulate(xs)]
    sy = [0.0, *accumulate(ys)]
    # bucket i is [edge[i], edge[i + 1]); the last point is a bucket of its own
    every = (n - 2) / (max_points - 2)  # > 1, so no bucket is empty
    edge = [int(i * every) + 1 for i in range(max_points - 2)] + [n - 1, n]
    out = [points[0]]
    a = 0
    for i in range(max_points - 2):
        start, end, nxt_end = edge[i], edge[i + 1], edge[i + 2]
        avg_x = (sx[nxt_end] - sx[end]) / (nxt_end - end)
        avg_y = (sy[nxt_end] - sy[end]) / (nxt_end - end)
        # twice the area of (a, j, avg) is |(ax - avg_x)(y_j - ay) - (ax - x_j)(avg_y - ay)|,
        # that is |x_j·dy + y_j·dx - c|
        ax, ay = xs[a], ys[a]
        dx, dy = ax - avg_x, avg_y - ay
        c = dx * ay + ax * dy
        bucket = zip(xs[start:end], ys[start:end], strict=True)
        areas = [abs(x * dy + y * dx - c) for x, y in bucket]
        a = start + areas.index(max(areas))
        out.append(points[a])
    out.append(points[-1])
    return out
