"""Pictures with matplotlib (headless Agg backend): the histogram grid of ``trajshard histogram --png``
and the one-map overview ingest writes to ``meta/histogram.png`` (the contact sheet is in sheet.py).

Both collapse dimensions that use a single bin into a one-line note; every figure is laid out by
matplotlib's constrained layout, so the figure title never overprints a panel.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trajshard.io import write_bytes_atomic

EDGE_COLOUR = "#c0392b"  # edge bins holding clipped samples
EDGE_WIDTH_PT = 3.0  # an edge bin is drawn at least this wide, whatever the number of bins
DPI = 100


def plt_module():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path | Callable[[bytes], None]) -> None:
    """Write the PNG atomically to a path, or hand its bytes to a writer (an object store's); the
    figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt_module().close(fig)
    if callable(path):
        path(buf.getvalue())
    else:
        write_bytes_atomic(path, buf.getvalue())


def dim_label(h, d: int) -> str:
    return f"{d} {h.names[d] if d < len(h.names) else ''}".strip()


def constant_note(h, dims: list[int], where: str = "panel") -> str:
    """One line for the dimensions that use a single bin (with that bin's value when known)."""

    def one(d: int) -> str:
        b = int(np.argmax(h.counts[d]))
        value = f"={h.centres[d, b]:.3g}" if h.centres is not None else f" bin {b}"
        return f"{dim_label(h, d)}{value}"

    return f"{len(dims)} constant dims (one bin, no {where}): " + ", ".join(one(d) for d in dims)


def histogram_png(h, path: str | Path | Callable[[bytes], None]) -> None:
    """``trajshard histogram --png``: :func:`histogram_figure` written as a PNG."""
    save_png(histogram_figure(h), path)


def histogram_figure(h):
    """A grid with one bar chart per non-constant action dimension: bins along x (their action values
    on the top axis), samples up, edge bins holding clipped samples in red, at least EDGE_WIDTH_PT wide."""
    plt = plt_module()
    dims, bins = h.counts.shape
    shown = [d for d in range(dims) if h.kind(d) != "constant"]
    constant = [d for d in range(dims) if h.kind(d) == "constant"]
    cols = max(1, min(4, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = plt.figure(figsize=(4.3 * cols, 2.5 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(shown):
            ax.axis("off")
            continue
        _dim_panel(ax, h, shown[k], bins)
        if k % cols == 0:
            ax.set_ylabel("samples", fontsize=7)
        if k + cols >= len(shown):
            ax.set_xlabel("bin", fontsize=7)
    if not shown:
        axes[0][0].axis("off")
        axes[0][0].text(0.5, 0.5, "every dimension is constant", ha="center", va="center")
    top = "top axis: action value of the bin; " if h.centres is not None else ""
    title = (
        f"trajshard histogram: action-bin occupancy per dimension, {h.samples} samples, {bins} bins "
        f"({top}red: edge bin holding clipped samples)"
    )
    fig.suptitle(_wrap(title, 42 * cols), fontsize=11)
    if constant:
        fig.supxlabel(_wrap(constant_note(h, constant), 40 * cols), fontsize=8, color="#555")
    return fig


def _dim_panel(ax, h, d: int, bins: int) -> None:
    s = h.dim_summary(d)
    c = h.counts[d]
    ax.stairs(c, np.arange(bins + 1) - 0.5, fill=True, color="#2c7fb8")  # one artist, not one bar per bin
    edge_bins = [b for b in (0, bins - 1) if c[b]]
    clipping = s["clipped_share"] if s["clipped_share"] is not None else s["edge_share"]
    red = s["kind"] != "two-valued" and clipping > 0
    if edge_bins:  # a line in points stays visible when a bin is narrower than a pixel
        ax.vlines(
            edge_bins,
            0,
            c[edge_bins],
            colors=EDGE_COLOUR if red else "#2c7fb8",
            linewidth=EDGE_WIDTH_PT,
            gid="edge-bins",
        )
    pad = max(1.0, 0.012 * bins)  # the edge lines sit inside the axes, clear of the spines
    ax.set_xlim(-0.5 - pad, bins - 0.5 + pad)
    warned = h.warned(d)
    tag = warned or s["kind"]
    ax.set_title(
        dim_label(h, d)[:32] + (f" [{tag}]" if tag else ""),
        fontsize=9,
        color=EDGE_COLOUR if warned else "black",
    )
    clip = "" if s["clipped_share"] is None else f"  clipped {100 * s['clipped_share']:.1f}%"
    ax.text(
        0.02,
        0.95,
        f"dead {s['dead_bins']}  edge {100 * s['edge_share']:.1f}%{clip}\n"
        f"H {s['entropy_bits']:.2f} bits  rmse {s['roundtrip_rmse']:.2g}",
        transform=ax.transAxes,
        fontsize=7,
        va="top",
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
    )
    ax.set_ylim(0, max(1, int(c.max())) * 1.35)  # headroom: the text box sits above the tallest bar
    ax.tick_params(labelsize=7)
    if h.centres is not None:
        top = ax.secondary_xaxis("top")
        where = np.unique(np.linspace(0, bins - 1, 5).round().astype(int))
        top.set_xticks(where, [f"{h.centres[d, b]:.3g}" for b in where])
        top.tick_params(labelsize=6, pad=1)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _edge_cells(ax, share: np.ndarray, bins: int, im) -> None:
    """The first and last bin of each row again as square markers: a cell is narrower than a pixel at
    255 bins, and a gripper's two values sit exactly there."""
    rows, cols = np.nonzero(share[:, [0, -1]])
    if len(rows):
        x = np.where(cols == 0, 0, bins - 1)
        ax.scatter(
            x,
            rows,
            c=share[rows, x],
            cmap=im.get_cmap(),
            norm=im.norm,
            marker="s",
            s=16,
            edgecolors="none",
            gid="edge-cells",
            clip_on=False,
        )
    pad = max(1.0, 0.012 * bins)
    ax.set_xlim(-0.5 - pad, bins - 0.5 + pad)


def histogram_heatmap_png(h, path: str | Path | Callable[[bytes], None]) -> None:
    """ingest's ``meta/histogram.png``: :func:`heatmap_figure` written as a PNG."""
    save_png(heatmap_figure(h), path)


def heatmap_figure(h):
    """ingest's ``meta/histogram.png``: one map of every non-constant dimension's bin occupancy (a row
    per dimension, share of samples per bin) on a log colour scale from the smallest non-zero share to
    the largest. Fast at any number of dimensions (one axes), so ingest and the dataset card use it."""
    plt = plt_module()
    from matplotlib.colors import LogNorm

    dims, bins = h.counts.shape
    shown = [d for d in range(dims) if h.kind(d) != "constant"] or list(range(dims))
    constant = [d for d in range(dims) if d not in shown]
    share = h.counts[shown] / np.maximum(h.counts[shown].sum(axis=1, keepdims=True), 1)
    nonzero = share[share > 0]
    lo, hi = (nonzero.min(), nonzero.max()) if nonzero.size else (1.0, 1.0)
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.22 * len(shown)), layout="constrained")
    im = ax.imshow(
        np.where(share > 0, share, np.nan),
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        norm=LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001)),
        extent=(-0.5, bins - 0.5, len(shown) - 0.5, -0.5),
    )
    _edge_cells(ax, share, bins, im)
    labels = [dim_label(h, d)[:24] + (f" [{h.warned(d)}]" if h.warned(d) else "") for d in shown]
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    for tick, d in zip(ax.get_yticklabels(), shown, strict=True):
        if h.warned(d):
            tick.set_color(EDGE_COLOUR)
    ax.set_xlabel("bin (0 = lowest action value of the dimension)")
    ax.set_title(
        f"meta/histogram.png: share of {h.samples} samples per bin, one row per dimension (empty bins blank)",
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="share of samples")
    if constant:
        fig.supxlabel(_wrap(constant_note(h, constant, "row"), 150), fontsize=7, color="#555")
    return fig
