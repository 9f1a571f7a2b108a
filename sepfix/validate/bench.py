"""Latency of an onnxruntime session: median and p90 over timed runs after a warm-up.

A repair is meant to make the deployed model faster, so ``sepfix validate --bench N`` times
the model and its reference on the same provider with the same inputs. The first runs pay for
allocation, kernel selection and (on TensorRT) engine building, so they are run and dropped.
Median and p90 rather than the mean: a single scheduling hiccup should not move the figure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sepfix.errors import SepfixError

__all__ = ["latency"]


def latency(
    session: Any,
    feeds: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    runs: int,
    warmup: int = 3,
) -> dict:
    """Time ``runs`` calls of ``session.run`` on one input set, after ``warmup`` untimed ones.

    ``feeds`` is one input set, or a list of them of which the first is used (every run sees
    the same data, so the figures compare). Returns ``{"median_ms", "p90_ms", "runs"}``.
    """
    if runs < 1:
        raise SepfixError(f"--bench needs at least 1 run, not {runs}")
    if warmup < 0:
        raise SepfixError(f"warm-up runs cannot be negative ({warmup})")
    if not isinstance(feeds, Mapping):
        if not feeds:
            raise SepfixError("no input set to time the model on")
        feeds = feeds[0]
    wanted = {value.name for value in session.get_inputs()}
    feed = {name: array for name, array in feeds.items() if name in wanted}
    outputs = [value.name for value in session.get_outputs()]
    for _ in range(warmup):
        session.run(outputs, feed)
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        start = time.perf_counter()
        session.run(outputs, feed)
        times[i] = (time.perf_counter() - start) * 1000.0
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "runs": int(runs),
    }
