"""Tokenizer guards: what a fitted tokenizer does to each action dimension, found at fit time.

Binning with q01/q99 bounds (OpenVLA's scheme) is right for continuous signals and wrong for sparse
ones: a dimension that is zero 99% of the time with rare +-3.75 commands has q01 == q99 == 0, so every
command becomes the zero token, and the policy can never move along it. Each dimension is checked
against the fitted tokenizer's bounds, on the dataset's merged distribution (the pass-1 sketch):

    constant        min == max: every step has one token (info: the dimension carries nothing)
    degenerate      the bounds collapse (high == low) though min != max: every value lands in one bin
    sparse          most of the mass (>= SPARSE_MASS) at one value, and the rare other values lie
                    outside the bounds: clipped into the edge bins
    heavy_clipping  more than CLIP_VARIANCE of the dimension's variance lies outside the bounds

``auto_mode`` picks a dimension's normalization for ``normalization = "auto"``: min/max where bounds
would erase commands (degenerate, sparse, or a few distinct values such as a binary gripper),
OpenVLA's bounds_q99 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID = np.linspace(0.0, 1.0, 2001)  # quantile levels the distribution is read at
SPARSE_MASS = 0.5
CLIP_VARIANCE = 0.5  # q01/q99 bounds clip 2% of steps by design: only flag when most movement is lost
FEW_VALUES = 3  # a dimension with at most this many distinct values is discrete (a gripper)
FIX = (
    "normalize it by min/max: --normalization auto, or in the job config "
    'normalization = {{default = "bounds_q99", dims = {{{dim} = "min_max"}}}}'
)


@dataclass(frozen=True)
class Shape:
    """One dimension's distribution, as the guards read it."""

    low: float  # min
    high: float  # max
    mode_value: float  # the value holding the most mass
    mode_mass: float  # its share of the steps
    distinct: int  # distinct values on the quantile grid
    grid: np.ndarray  # quantiles at GRID

    @property
    def constant(self) -> bool:
        return self.low == self.high


def shapes(sketch, stats: dict) -> list[Shape]:
    """Each dimension's Shape, from the merged sketch (pipelines/stats.py StreamStats)."""
    q = sketch.quantile_at(GRID)  # [L, D]
    out = []
    for d in range(q.shape[1]):
        col = q[:, d]
        values, counts = np.unique(col, return_counts=True)
        best = int(np.argmax(counts))
        out.append(
            Shape(
                float(stats["min"][d]),
                float(stats["max"][d]),
                float(values[best]),
                float((counts[best] - 1) / (len(GRID) - 1)) if counts[best] > 1 else 0.0,
                len(values),
                col,
            )
        )
    return out


def auto_mode(shape: Shape, q01: float, q99: float) -> tuple[str, str]:
    """(mode, reason) for one dimension under ``normalization = auto``."""
    if shape.constant:
        return "bounds_q99", "constant"
    if q01 == q99:
        return "min_max", f"q01 == q99 == {q01:.6g} but values span [{shape.low:.6g}, {shape.high:.6g}]"
    if shape.distinct <= FEW_VALUES:
        return "min_max", f"{shape.distinct} distinct values (discrete)"
    if shape.mode_mass >= SPARSE_MASS and (shape.low < q01 or shape.high > q99):
        return (
            "min_max",
            f"{100 * shape.mode_mass:.0f}% of steps at {shape.mode_value:.6g}, rare commands beyond q01/q99",
        )
    return "bounds_q99", "continuous"


def auto_chooser(sketch, stats: dict):
    """``auto(dim) -> (mode, reason)`` over the merged distribution, its shapes read once, when first asked."""
    found: list[Shape] = []

    def choose(d: int) -> tuple[str, str]:
        if not found:
            found.extend(shapes(sketch, stats))
        return auto_mode(found[d], float(stats["q01"][d]), float(stats["q99"][d]))

    return choose


def guard_dims(shapes_: list[Shape], low: np.ndarray, high: np.ndarray, names: list[str]) -> list[dict]:
    """Every guard finding of a tokenizer whose bounds are [low, high] per dimension."""
    found = []
    for d, s in enumerate(shapes_):
        name = names[d] if d < len(names) else ""
        finding = _guard(s, float(low[d]), float(high[d]))
        if finding is not None:
            kind, severity, message = finding
            fix = "" if kind == "constant" else FIX.format(dim=d)
            found.append(
                {"dim": d, "name": name, "kind": kind, "severity": severity, "message": message, "fix": fix}
            )
    return found


def _guard(s: Shape, lo: float, hi: float) -> tuple[str, str, str] | None:
    if s.constant:
        return (
            "constant",
            "info",
            f"constant at {s.low:.6g}: one token for every step, the dimension carries nothing",
        )
    outside = (s.grid < lo) | (s.grid > hi)
    clipped = float(outside.mean())
    worst = max(lo - s.low, s.high - hi, 0.0)
    if hi <= lo:
        return (
            "degenerate",
            "warning",
            f"bounds collapse to {lo:.6g} though values span [{s.low:.6g}, {s.high:.6g}]: every step decodes "
            f"to {lo:.6g} (round-trip error up to {worst:.6g})",
        )
    if s.mode_mass >= SPARSE_MASS and worst > 0 and clipped > 0:
        return (
            "sparse",
            "warning",
            f"{100 * s.mode_mass:.1f}% of steps are {s.mode_value:.6g}; the rare commands beyond the bounds "
            f"[{lo:.6g}, {hi:.6g}] ({100 * clipped:.2f}% of steps) are clipped (round-trip error up to {worst:.6g})",
        )
    dev = (s.grid - s.grid.mean()) ** 2
    share = float(dev[outside].sum() / dev.sum()) if dev.sum() > 0 else 0.0
    if share > CLIP_VARIANCE:
        return (
            "heavy_clipping",
            "warning",
            f"{100 * share:.0f}% of its variance lies outside the bounds [{lo:.6g}, {hi:.6g}] "
            f"({100 * clipped:.2f}% of steps clipped, error up to {worst:.6g})",
        )
    return None


def guard_lines(guards: list[dict]) -> list[str]:
    """One line per warning (with its fix), and one line for all constant dimensions."""
    lines = [
        f"{dim_label(g)}: {g['kind']}: {g['message']}; fix: {g['fix']}"
        for g in guards
        if g["kind"] != "constant"
    ]
    constant = [g for g in guards if g["kind"] == "constant"]
    if constant:
        dims = ", ".join(str(g["dim"]) for g in constant)
        lines.append(f"{len(constant)} constant action dims ({dims}): their tokens carry nothing")
    return lines


def dim_label(g: dict) -> str:
    return f"action dim {g['dim']}" + (f" ({g['name']})" if g["name"] else "")
