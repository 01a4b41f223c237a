"""Pictures with matplotlib (headless Agg backend): the histogram grid and an episode's contact sheet."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    from trajshard.pipelines.shards import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
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
        colors = ["#c0392b" if b in (0, bins - 1) else "#2c7fb8" for b in range(bins)]
        ax.bar(np.arange(bins), h.counts[d], width=1.0, color=colors)
        ax.set_title(f"{d} {s['name']}"[:32], fontsize=9)
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
    fig.tight_layout()
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
