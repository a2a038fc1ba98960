"""The counter-based draw of hybrid sampling (Leeb et al., 2023, section 2.2), defined by integer arithmetic.

Every random choice is a pure function of (SEED, sample index, counter), so the draw is the same in numpy (here),
in the python-backend sampler and in the ONNX graph of the native flavour (``export/draw_graph.py`` builds the same
arithmetic from ``uint64`` Add/Mul/BitShift/BitwiseXor/BitwiseAnd nodes), and a client can recompute
``SOURCE_INDEX`` from ``SEED`` alone. Needs numpy only (the package's error root where it is importable).

* ``key_hash(seed, sample, counter)``: splitmix64's finaliser applied three times, mixing in one key word each time:
  ``h = mix(mix(mix(seed) + sample) + counter)``, where ``mix(x)`` adds the golden gamma ``0x9E3779B97F4A7C15`` and
  runs splitmix64's xor-shift-multiply rounds (all arithmetic modulo 2^64).
* ``bounded(h, n)``: the 64-bit multiply-high reduction ``floor(h * n / 2^64)``, an index in ``[0, n)``. It is
  computed exactly in ``uint64`` from the two 32-bit halves of ``h`` (n < 2^32): with ``h = hi * 2^32 + lo``,
  ``floor(h * n / 2^64) = (hi * n + (lo * n >> 32)) >> 32``, and neither sum overflows. There is no rejection step
  (a graph has no loop), so the reduction is biased, but by at most n / 2^64: each index is hit by either
  ``floor(2^64 / n)`` or ``ceil(2^64 / n)`` of the 2^64 hash values.

The draw modes (the counter is the group index: a variable, or a dimension in ``per_dimension`` mode):

* ``independent`` (default): group g of sample s takes stored vector ``bounded(key_hash(seed, s, g), N)``, with
  replacement across groups, as the paper defines hybrid sampling;
* ``per_dimension``: the same with one group per latent dimension;
* ``distinct``: a partial Fisher-Yates shuffle of ``0..N-1`` per sample; step g swaps position g with position
  ``g + bounded(key_hash(seed, s, g), N - g)`` and group g takes what lands at position g, so the groups of one
  sample come from different stored vectors (needs N >= number of groups), each k-subset in each order equally
  likely up to the bias above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

if TYPE_CHECKING:
    from sae.core.errors import SAEError
else:
    try:
        from sae.core.errors import SAEError
    except ImportError:  # copied beside a python-backend model.py as sae_draw.py, where the package may be absent
        SAEError = type("SAEError", (Exception,), {})

INDEPENDENT, DISTINCT, PER_DIMENSION = "independent", "distinct", "per_dimension"
DRAW_MODES = (INDEPENDENT, DISTINCT, PER_DIMENSION)  # the first is the default
NATIVE_DRAW_MODES = (INDEPENDENT,)  # what the one-graph native NAME_hybrid_sample serves (no DRAW input)

GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MIX_MULTIPLIERS = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
MIX_SHIFTS = (30, 27, 31)
LOW_32 = 0xFFFFFFFF
MAX_STORED = 1 << 32  # bounded(h, n) is exact for n below this
MAX_SEED = (1 << 63) - 1  # SEED travels as int64


class DrawError(SAEError, ValueError):
    """A draw that cannot be made: a seed out of range, an unknown draw mode, a bank too small for the distinct
    draw, or counts out of range."""


def _u64(value: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    return np.asarray(value).astype(np.uint64)


def mix(x: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """splitmix64: one step of its state (add the golden gamma) and its finaliser, elementwise on uint64."""
    a, b = (np.uint64(m) for m in MIX_MULTIPLIERS)
    s1, s2, s3 = (np.uint64(s) for s in MIX_SHIFTS)
    with np.errstate(over="ignore"):
        z = _u64(x) + np.uint64(GOLDEN_GAMMA)
        z = (z ^ (z >> s1)) * a
        z = (z ^ (z >> s2)) * b
        return z ^ (z >> s3)


def key_hash(seed: int, sample: npt.ArrayLike, counter: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """The 64-bit hash of (seed, sample, counter); ``sample`` and ``counter`` broadcast."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise DrawError(f"seed must be in 0..2^63-1, got {seed}")
    with np.errstate(over="ignore"):
        return mix(mix(mix(_u64(int(seed))) + _u64(sample)) + _u64(counter))


def bounded(h: npt.ArrayLike, n: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``floor(h * n / 2^64)`` exactly, as int64 in [0, n): the multiply-high reduction (bias <= n / 2^64)."""
    n = _u64(n)
    if (n < 1).any() or (n >= np.uint64(MAX_STORED)).any():
        raise DrawError(f"the range of an index must be in 1..2^32-1, got {n}")
    h = _u64(h)
    hi, lo = h >> np.uint64(32), h & np.uint64(LOW_32)
    with np.errstate(over="ignore"):
        index: npt.NDArray[np.int64] = ((hi * n + ((lo * n) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)
    return index


def source_index(
    seed: int, num_samples: int, num_groups: int, num_stored: int, mode: str = INDEPENDENT
) -> npt.NDArray[np.int64]:
    """int64 [num_samples, num_groups]: the stored vector each group of each sample comes from."""
    if mode not in DRAW_MODES:
        raise DrawError(f"draw mode must be one of {', '.join(DRAW_MODES)}, got {mode!r}")
    if num_samples < 0 or num_groups < 1:
        raise DrawError(f"num_samples must be >= 0 and num_groups >= 1, got {num_samples} and {num_groups}")
    samples = np.arange(num_samples, dtype=np.uint64)[:, None]
    groups = np.arange(num_groups, dtype=np.uint64)[None, :]
    hashes = key_hash(seed, samples, groups)
    if mode != DISTINCT:
        return bounded(hashes, num_stored)
    if num_groups > num_stored:
        raise DrawError(
            f"the distinct draw needs at least as many stored latents as variables ({num_groups}); "
            f"the bank has {num_stored}"
        )
    order = np.broadcast_to(np.arange(num_stored, dtype=np.int64), (num_samples, num_stored)).copy()
    rows = np.arange(num_samples)
    for g in range(num_groups):
        other = g + bounded(hashes[:, g], num_stored - g)
        order[rows, g], order[rows, other] = order[rows, other], order[rows, g].copy()
    return order[:, :num_groups]


def to_uint8(images: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Float images in [0, 1] -> uint8 ``round(clip(x, 0, 1) * 255)`` in float32 arithmetic, rounding half to even
    (numpy's rint, ONNX's Round): the served ``IMAGE_U8`` is exactly this of the served ``IMAGE``."""
    clipped = np.clip(np.asarray(images, np.float32), np.float32(0), np.float32(1))
    pixels: npt.NDArray[np.uint8] = np.rint(clipped * np.float32(255)).astype(np.uint8)
    return pixels
