"""One tokenizer over several datasets' merged action statistics (a mixture's ``tokenizer = "pooled"``).

Each trajshard dataset keeps its own ``stats.json`` and ``tokenizer.json``. A mixture uses them as
they are (``own``: OpenVLA's scheme, every dataset normalized by its own statistics into the shared
bins) or pools them into one tokenizer (this module). Dimension ``j`` of the pooled statistics is
pooled over the datasets that have a dimension ``j`` (datasets are padded at the end), each with its
mixture weight, renormalized over those datasets: the distribution the model is trained on.

What merges exactly, from ``stats.json`` alone: ``min`` and ``max`` (their extremes), ``mean`` (the
weighted mean) and ``std`` (from the weighted second moments). Quantiles do **not**: the quantile of a
mixture depends on each distribution's whole shape, and stats.json keeps five quantiles per
dimension. We refit them from what is stored: each dataset's CDF is taken as the curve through
``(min, 0), (q01, .01), (q10, .1), (q50, .5), (q90, .9), (q99, .99), (max, 1)``, interpolated
linearly in the probit ``Phi^-1(p)`` (exact for a normal distribution), the tails below q01 and above
q99 carrying the probit line of the segment next to them on to min and max; the mixture's CDF is their weighted sum, inverted by bisection
(:func:`mixture_quantile`). The result is exact when one dataset has the dimension or when all agree on
that quantile, and always lies between the smallest and the largest of the datasets' own quantiles at
that level (so does the true pooled quantile); inside that bracket it is an interpolation, not the
truth. ``quantile_method`` in the pooled statistics says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from trajshard.tokenizers.normalize import MODES, Normalizer
from trajshard.tokenizers.uniform import UniformTokenizer

LEVELS = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
METHOD = "pooled(CDF interpolated through min, q01..q99, max; probit-linear inside)"


def _cdf_points(stats: dict, d: int) -> tuple[np.ndarray, np.ndarray]:
    xs = [stats["min"][d], *(stats[k][d] for k in LEVELS), stats["max"][d]]
    ps = [0.0, *LEVELS.values(), 1.0]
    return np.maximum.accumulate(np.asarray(xs, dtype=np.float64)), np.asarray(ps)


_NORMAL = NormalDist()
_Z = np.array([_NORMAL.inv_cdf(p) for p in LEVELS.values()])  # probits of q01 .. q99


def _cdf(points: tuple[np.ndarray, np.ndarray], x: float) -> float:
    """The dataset's CDF at ``x``, right-continuous, through its stored points: linear in the probit
    (``Phi^-1(p)``) between q01 and q99, so exact for a normal distribution; below q01 and above q99
    the probit line of the segment next to it, up to min and max, where the remaining mass sits."""
    xs, ps = points
    k = int(np.searchsorted(xs, x, side="right")) - 1  # the last point at or before x
    if k < 0:
        return 0.0
    if k >= len(xs) - 1:
        return 1.0
    span = xs[k + 1] - xs[k]
    frac = (x - xs[k]) / span if span > 0 else 0.0
    if 1 <= k < len(xs) - 2:  # between two stored quantiles
        return _NORMAL.cdf(_Z[k - 1] + (_Z[k] - _Z[k - 1]) * frac)
    # a tail: the probit line of the next segment in, carried on to min or max (where the rest jumps)
    inner = (xs[2] - xs[1]) if k == 0 else (xs[-2] - xs[-3])
    if inner > 0:
        if k == 0:
            return _NORMAL.cdf(_Z[0] - (_Z[1] - _Z[0]) * (xs[1] - x) / inner)
        return _NORMAL.cdf(_Z[-1] + (_Z[-1] - _Z[-2]) * (x - xs[-2]) / inner)
    return float(ps[k] + (ps[k + 1] - ps[k]) * frac)


def mixture_quantile(
    curves: list[tuple[np.ndarray, np.ndarray]], weights: Sequence[float], p: float
) -> float:
    """``inf {x : sum_d w_d F_d(x) >= p}`` (weights summing to 1), by bisection to float precision."""
    w = [float(v) for v in weights]

    def f(x: float) -> float:
        return sum(wi * _cdf(c, x) for wi, c in zip(w, curves, strict=True))

    lo = min(float(c[0][0]) for c in curves)
    hi = max(float(c[0][-1]) for c in curves)
    if f(lo) >= p - 1e-12:
        return lo
    for _ in range(200):  # invariant: f(lo) < p <= f(hi)
        mid = lo + (hi - lo) / 2
        if mid <= lo or mid >= hi:
            break
        if f(mid) >= p - 1e-12:
            hi = mid
        else:
            lo = mid
    return hi


def pool_action_stats(streams: Sequence[dict], weights: Sequence[float]) -> dict[str, object]:
    """The ``stats.json`` action entries of several datasets (widths may differ) pooled by weight, as
    one stats entry as wide as the widest; see the module docstring for what is exact."""
    widths = [len(s["mean"]) for s in streams]
    out: dict[str, list] = {k: [] for k in ("min", "max", "mean", "std", *LEVELS)}
    for j in range(max(widths)):
        have = [i for i, n in enumerate(widths) if n > j]
        w = np.asarray([weights[i] for i in have], dtype=np.float64)
        w = w / w.sum()
        st = [streams[i] for i in have]
        mean = float(sum(wi * s["mean"][j] for wi, s in zip(w, st, strict=True)))
        second = float(sum(wi * (s["std"][j] ** 2 + s["mean"][j] ** 2) for wi, s in zip(w, st, strict=True)))
        out["min"].append(float(min(s["min"][j] for s in st)))
        out["max"].append(float(max(s["max"][j] for s in st)))
        out["mean"].append(mean)
        out["std"].append(float(np.sqrt(max(second - mean * mean, 0.0))))
        curves = [_cdf_points(s, j) for s in st]
        for k, p in LEVELS.items():
            same = {s[k][j] for s in st}
            out[k].append(float(st[0][k][j]) if len(same) == 1 else mixture_quantile(curves, w, p))
    return {
        "count": int(sum(s.get("count", 0) for s in streams)),
        "quantile_method": METHOD,
        **out,
    }


def common_uniform(tokenizers: Sequence[dict], width: int) -> tuple[int, str, str, list[bool]]:
    """``(bins, mode, normalization mode, mask)`` that several datasets' ``tokenizer.json`` share, for one
    tokenizer over them all (``width`` dimensions); raises ValueError naming what differs. They must be
    uniform with the same bins and mode, one normalization mode (the same for every dimension), and
    agree on the normalization mask where they overlap."""
    kinds = {(t["type"], t.get("mode"), t["bins"]) for t in tokenizers}
    if len(kinds) != 1 or next(iter(kinds))[0] != "uniform":
        raise ValueError(
            "one tokenizer over several datasets needs uniform tokenizers with the same bins and mode in "
            f"every dataset, got (type, mode, bins) {sorted(kinds, key=str)}"
        )
    norms = {t["normalization"]["mode"] for t in tokenizers}
    if len(norms) != 1 or next(iter(norms)) not in MODES:
        raise ValueError(
            f"one tokenizer over several datasets needs one normalization mode ({', '.join(MODES)}) for "
            f"every dimension of every dataset, got {sorted(norms)}"
        )
    mask = []
    for j in range(width):
        have = {
            bool(t["normalization"]["mask"][j]) for t in tokenizers if len(t["normalization"]["mask"]) > j
        }
        if len(have) > 1:
            raise ValueError(
                f"action dim {j} is normalized in some datasets and not in others (normalization_mask)"
            )
        mask.append(have.pop() if have else True)
    _, mode, bins = next(iter(kinds))
    return bins, mode, next(iter(norms)), mask


def pooled_tokenizer(
    tokenizers: Sequence[dict], streams: Sequence[dict], weights: Sequence[float]
) -> UniformTokenizer:
    """One uniform tokenizer, as wide as the widest dataset, over the pooled action statistics (the
    datasets' tokenizers must agree, see :func:`common_uniform`)."""
    pooled = pool_action_stats(streams, weights)
    bins, mode, norm, mask = common_uniform(tokenizers, len(pooled["mean"]))
    return UniformTokenizer(Normalizer.fit(norm, pooled, mask), bins, mode)


def narrowed(tok: UniformTokenizer, width: int) -> UniformTokenizer:
    """The tokenizer on the first ``width`` dimensions only (a dataset narrower than the pool)."""
    n = tok.norm
    norm = Normalizer(n.mode, n.center[:width], n.half_width[:width], n.mask[:width])
    return UniformTokenizer(norm, tok.bins, tok.mode)
