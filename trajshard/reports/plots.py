"""Pictures with matplotlib (headless Agg backend): the histogram grid and an episode's contact sheet."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trajshard.io import write_bytes_atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path | Callable[[bytes], None]) -> None:
    """Write the PNG atomically to a path, or hand its bytes to a writer (an object store's)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    if callable(path):
        path(buf.getvalue())
    else:
        write_bytes_atomic(path, buf.getvalue())


def histogram_png(h, path: str | Path) -> None:
    """A grid with one bar chart per action dimension: occupancy, edge bins in red, dead bins counted."""
    plt = _plt()
    dims = h.counts.shape[0]
    cols = min(4, dims)
    rows = -(-dims // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), squeeze=False)
    bins = h.counts.shape[1]
    for d in range(rows * cols):
        ax = axes[d // cols][d % cols]
        if d >= dims:
            ax.axis("off")
            continue
        s = h.dim_summary(d)
        edges = np.arange(bins + 1) - 0.5
        ax.stairs(h.counts[d], edges, fill=True, color="#2c7fb8")  # one artist, not one bar per bin
        ax.bar([0, bins - 1], h.counts[d][[0, -1]], width=1.0, color="#c0392b")
        warned = h.warned(d)
        title = f"{d} {s['name']}"[:32] + (f" [{warned}]" if warned else "")
        ax.set_title(title, fontsize=9, color="#c0392b" if warned else "black")
        ax.text(
            0.02,
            0.95,
            f"dead {s['dead_bins']}  edge {100 * s['edge_share']:.1f}%\n"
            f"H {s['entropy_bits']:.2f} bits  rmse {s['roundtrip_rmse']:.2g}",
            transform=ax.transAxes,
            fontsize=7,
            va="top",
        )
        ax.set_xlim(-0.5, bins - 0.5)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"action-bin occupancy: {h.samples} samples, {bins} bins (edge bins red)", fontsize=11)
    fig.subplots_adjust(
        left=0.04, right=0.99, bottom=0.04, top=1 - 0.55 / (2.2 * rows), wspace=0.15, hspace=0.45
    )
    _save(fig, path)
    plt.close(fig)


def histogram_heatmap_png(h, path: str | Path | Callable[[bytes], None]) -> None:
    """One picture of every dimension's bin occupancy: a row per dimension, share of samples per bin
    on a log colour scale. Fast at any number of dimensions (one axes), so the dataset card uses it."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    dims, bins = h.counts.shape
    share = h.counts / np.maximum(h.counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.22 * dims))
    im = ax.imshow(
        np.where(share > 0, share, np.nan),
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        norm=LogNorm(vmin=max(share[share > 0].min(initial=1e-6), 1e-6), vmax=1.0),
    )
    labels = [
        f"{d} {h.names[d] if d < len(h.names) else ''}"[:24] + (f" [{h.warned(d)}]" if h.warned(d) else "")
        for d in range(dims)
    ]
    ax.set_yticks(range(dims), labels, fontsize=7)
    for d, tick in enumerate(ax.get_yticklabels()):
        if h.warned(d):
            tick.set_color("#c0392b")
    ax.set_xlabel("bin")
    ax.set_title(f"action-bin occupancy (share of {h.samples} samples; empty bins blank)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    fig.subplots_adjust(
        left=0.18, right=0.9, top=1 - 0.5 / (1.2 + 0.22 * dims), bottom=0.6 / (1.2 + 0.22 * dims)
    )
    _save(fig, path)
    plt.close(fig)


def contact_sheet_png(ep: dict, path: str | Path, columns: int = 8) -> None:
    """Frames over time per camera on top; state, action and token heat map below, on one time axis."""
    plt = _plt()
    from PIL import Image

    cams, times = ep["cameras"], ep["times"]
    n = len(times)
    picks = np.unique(np.linspace(0, n - 1, min(columns, n)).round().astype(int))
    rows = len(cams) + 3
    fig = plt.figure(figsize=(2 * len(picks), 1.9 * len(cams) + 6.5))
    grid = fig.add_gridspec(rows, len(picks), height_ratios=[1.0] * len(cams) + [1.3, 1.3, 1.0])
    for r, cam in enumerate(cams):
        for c, i in enumerate(picks):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(np.asarray(Image.open(io.BytesIO(ep["images"][cam][i])).convert("RGB")))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={times[i]:.2f}s", fontsize=8)
            if c == 0:
                ax.set_ylabel(cam, fontsize=9)
    for row, (key, label) in enumerate((("state", "state"), ("action", "action")), start=len(cams)):
        ax = fig.add_subplot(grid[row, :])
        ax.plot(times, ep[key], linewidth=0.9)
        ax.set_ylabel(label, fontsize=9)
        ax.set_xlim(times[0], times[-1])
        for i in picks:
            ax.axvline(times[i], color="grey", linewidth=0.4, alpha=0.6)
        ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[len(cams) + 2, :])
    tokens = ep["tokens"]
    if tokens is not None and tokens.ndim == 2:
        ax.imshow(
            tokens.T,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            extent=(times[0], times[-1], tokens.shape[1] - 0.5, -0.5),
        )
        ax.set_ylabel("tokens\n(dim)", fontsize=9)
    else:
        ax.text(0.5, 0.5, "tokens are not per-dimension (FAST)", ha="center", transform=ax.transAxes)
    ax.set_xlabel("episode time (s)", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.suptitle(f"{ep['episode']}: {ep['instruction'][:90]}", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
