"""Largest-Triangle-Three-Buckets downsampling (Steinarsson, "Downsampling Time Series for
Visual Representation", 2013): keeps the first and last points and, from each of ``n - 2``
equal buckets in between, the point that makes the largest triangle with the point kept before
it and the mean of the next bucket, so peaks and dips survive where even spacing drops them."""

from __future__ import annotations

from collections.abc import Sequence
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
    out = [points[0]]
    every = (n - 2) / (max_points - 2)
    a = 0
    for i in range(max_points - 2):
        start = int(i * every) + 1
        end = int((i + 1) * every) + 1
        nxt_end = min(int((i + 2) * every) + 1, n)
        nxt = points[end:nxt_end] if end < n - 1 else points[n - 1 :]
        avg_x = sum(float(p[0]) for p in nxt) / len(nxt)
        avg_y = sum(float(p[1]) for p in nxt) / len(nxt)
        ax, ay = float(points[a][0]), float(points[a][1])
        best, best_area = start, -1.0
        for j in range(start, min(end, n - 1)):
            x, y = float(points[j][0]), float(points[j][1])
            area = abs((ax - avg_x) * (y - ay) - (ax - x) * (avg_y - ay))
            if area > best_area:
                best, best_area = j, area
        out.append(points[best])
        a = best
    out.append(points[-1])
    return out
