"""Per-key rate limits on submits (``POST /v1/experiments``, ``POST /v1/sweeps``): a token bucket
per owner (the API key's owner; anonymous loopback users share one), ``REGLAB_SUBMIT_RATE``
tokens a second up to ``REGLAB_SUBMIT_BURST``. An empty bucket answers 429 with ``Retry-After``
(whole seconds until a token is back). ``REGLAB_SUBMIT_RATE=0`` turns the limit off.

The buckets live in this process's memory: right for the one API process ``reglab serve`` and
the compose file run. Several API replicas would each allow the full rate (a shared limiter,
e.g. in Redis, would be needed then).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request

from service.api.auth import get_owner
from service.api.errors import APIError

#: buckets kept; the least recently used is dropped beyond this (a dropped bucket was full or
#: nearly: it refills while unused)
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when a token was taken, else the seconds until one is back."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            self._buckets[key] = bucket
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


def _buckets(request: Request) -> TokenBuckets:
    state = request.app.state
    buckets = getattr(state, "submit_buckets", None)
    if buckets is None:
        settings = state.settings
        buckets = TokenBuckets(settings.submit_rate, settings.submit_burst)
        state.submit_buckets = buckets
    return buckets


async def submit_limit(request: Request) -> None:
    """The dependency of submit routes: 429 with Retry-After when the owner's bucket is empty."""
    owner = await get_owner(request)
    wait = _buckets(request).take(owner)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise APIError(
            429,
            "too many requests",
            f"submit rate limit ({request.app.state.settings.submit_rate:g}/s, burst "
            f"{request.app.state.settings.submit_burst}) reached for this API key; retry in "
            f"{seconds} s",
            headers={"Retry-After": str(seconds)},
        )
