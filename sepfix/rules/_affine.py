"""Per-channel constants: what SEP008 (detached affine) and SEP013 (multi-branch re-parameterisation)
both fold into a conv's weight and bias.

A constant is per-channel when, broadcast against an activation of rank `rank` (N, C, spatial...),
it varies along the channel axis only: its shape right-aligned to that rank is 1 everywhere but
axis 1, where it is 1 (one value for every channel) or C. `(C,)` is not one: it broadcasts
along the last (W) axis.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Scope, Source

# Constants a rewrite may fold: a plain initializer, a Constant node, or either through
# Identity/Cast/Reshape... (not an initializer that is also a graph input: the caller may feed
# another value at run time; not Q/DQ: explicit quantization needs it).
FOLDABLE_SOURCES = frozenset({Source.INITIALIZER, Source.CONSTANT_NODE, Source.FOLDED})


def constant_shape(index: GraphIndex, scope: Scope, name: str) -> tuple | None:
    """The shape of a constant a rewrite may fold, or None when `name` is not one."""
    if not name:
        return None
    source = index.weight_source(scope, name)
    if source.kind not in FOLDABLE_SOURCES or source.shape is None:
        return None
    if not all(isinstance(d, int) and d >= 0 for d in source.shape):
        return None
    return tuple(source.shape)


def per_channel_size(shape: tuple, rank: int) -> int | None:
    """How many values a constant of `shape` has along the channel axis of a rank-`rank`
    activation (1 = one for all), or None when it is not a per-channel constant there."""
    if len(shape) > rank:
        return None  # it would broadcast the activation to a higher rank
    aligned = (1,) * (rank - len(shape)) + tuple(shape)
    if any(d != 1 for i, d in enumerate(aligned) if i != 1):
        return None
    return aligned[1]


def channel_vector(value: np.ndarray, channels: int) -> np.ndarray:
    """A per-channel constant as one float64 value per channel."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    return np.broadcast_to(flat, (channels,)).copy() if flat.size == 1 else flat.copy()
