"""An episode's contact sheet (``trajshard inspect --png``): frames over time per camera on top; below,
on one shared time axis, the instruction segments, state and action curves with named legends (at
most ``GROUP`` dimensions per panel, or one panel per named slice of info.json's action layout), and
the tokens of every step with a colour bar.

Time cells are drawn between tick boundaries (half-way between neighbouring ticks), so cell ``i`` is
centred on tick ``i``'s time; a dimension constant over the episode gets a line in a note, not a
curve.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np

from trajshard.reports.episode import segments
from trajshard.reports.plots import plt_module, save_png

GROUP = 8  # most curves in one panel: each gets a distinct colour of the tab10 cycle and a legend entry
SEGMENT_COLOUR = "#c0392b"
NAMED_ROWS = 30  # up to this many dimensions the token rows are labelled with their names


def contact_sheet_png(ep: dict, path: str | Path, columns: int = 8) -> None:
    """Draw the sheet of an episode from ``reports.episode.load_episode`` and write it atomically."""
    save_png(contact_sheet_figure(ep, columns), path)


def contact_sheet_figure(ep: dict, columns: int = 8):
    """The contact sheet as a matplotlib figure (the caller saves or closes it)."""
    plt = plt_module()
    times = ep["times"]
    groups = {key: panels(ep[key], ep[f"{key}_names"], ep["layout"]) for key in ("state", "action")}
    rows = [(key, g) for key in ("state", "action") for g in groups[key]]
    frame_h = 1.9 * len(ep["cameras"])
    named = ep["tokens"] is not None and ep["tokens"].shape[1] <= NAMED_ROWS
    token_h = max(1.7, 0.13 * ep["tokens"].shape[1]) if named else 1.7  # a name's line per row
    series_h = 0.6 + 1.25 * len(rows) + token_h
    fig = plt.figure(
        figsize=(2 * min(columns, len(times)) + 3, frame_h + series_h + 0.6), layout="constrained"
    )
    top, bottom = fig.subfigures(2, 1, height_ratios=[max(frame_h, 0.01), series_h])
    if ep["cameras"]:
        _frames(top, ep, columns)
    grid = bottom.add_gridspec(len(rows) + 2, 1, height_ratios=[0.6] + [1.25] * len(rows) + [token_h])
    strip = bottom.add_subplot(grid[0])
    _segment_strip(strip, ep)
    for r, (key, (label, dims, constant)) in enumerate(rows, start=1):
        ax = bottom.add_subplot(grid[r], sharex=strip)
        _curves(ax, times, ep[key], ep[f"{key}_names"], dims, constant, f"{key}\n{label}")
        _mark_segments(ax, ep)
    ax = bottom.add_subplot(grid[len(rows) + 1], sharex=strip)
    _tokens(bottom, ax, ep)
    _mark_segments(ax, ep)
    ax.set_xlabel("episode time (s)", fontsize=9)
    row = ep["row"]
    fig.suptitle(
        f"{ep['episode']} (source {row['source_episode']}): {len(times)} steps, "
        f"t={times[0]:.2f}-{times[-1]:.2f}s, {len(segments(ep))} instruction segment(s)",
        fontsize=11,
    )
    return fig


def panels(
    values: np.ndarray, names: list[str], layout: dict[str, tuple[int, int]]
) -> list[tuple[str, list[int], list[int]]]:
    """(label, dims drawn, dims noted as constant) per panel: one per named slice of ``layout`` when
    it covers every dimension (a slice wider than ``GROUP`` is split), else the dims that move in
    this episode in even runs of at most ``GROUP``, the constant ones noted on the first panel."""
    width = values.shape[1]
    flat = np.ptp(values, axis=0) <= 1e-9 * np.maximum(1.0, np.abs(values).max(axis=0))
    covered = sorted(d for a, b in layout.values() for d in range(a, b))
    if layout and covered == list(range(width)):
        spans = sorted((a, b, name) for name, (a, b) in layout.items())
        return [
            (label, moving[k : k + GROUP], [d for d in range(a, b) if flat[d]] if k == 0 else [])
            for a, b, label in spans
            for moving in [[d for d in range(a, b) if not flat[d]]]
            for k in range(0, max(len(moving), 1), GROUP)
        ]
    moving = [d for d in range(width) if not flat[d]]
    constant = [d for d in range(width) if flat[d]]
    runs = np.array_split(np.array(moving, dtype=int), max(1, -(-len(moving) // GROUP)))
    return [
        (dim_ranges([int(d) for d in run]), [int(d) for d in run], constant if i == 0 else [])
        for i, run in enumerate(runs)
    ]


def dim_ranges(dims: list[int]) -> str:
    """``dims 0-6, 22`` for [0, ..., 6, 22]: the panel's dims as runs of consecutive indices."""
    runs: list[list[int]] = []
    for d in dims:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return "dims " + ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs) if runs else ""


def tick_edges(times: np.ndarray) -> np.ndarray:
    """Cell boundaries of ticks at ``times``: half-way between neighbours, half a step out at the ends."""
    if len(times) == 1:
        return np.array([times[0] - 0.5, times[0] + 0.5])
    mid = (times[1:] + times[:-1]) / 2
    return np.concatenate([[2 * times[0] - mid[0]], mid, [2 * times[-1] - mid[-1]]])


def _frames(sub, ep: dict, columns: int) -> None:
    from PIL import Image

    cams, times = ep["cameras"], ep["times"]
    picks = np.unique(np.linspace(0, len(times) - 1, min(columns, len(times))).round().astype(int))
    grid = sub.add_gridspec(len(cams), len(picks))
    for r, cam in enumerate(cams):
        for c, i in enumerate(picks):
            ax = sub.add_subplot(grid[r, c])
            ax.imshow(np.asarray(Image.open(io.BytesIO(ep["images"][cam][i])).convert("RGB")))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"step {i}, t={times[i]:.2f}s", fontsize=8)
            if c == 0:
                ax.set_ylabel(cam, fontsize=9)


def _segment_strip(ax, ep: dict) -> None:
    """One span per instruction segment, its text inside; the segment starts also mark every panel."""
    edges = tick_edges(ep["times"])
    for k, (a, b, text) in enumerate(segments(ep)):
        ax.axvspan(edges[a], edges[b], color=("#f4d6d2" if k % 2 else "#e8eef6"))
        ax.text(edges[a], 0.5, f" {k + 1}: {text}", fontsize=8, va="center", ha="left", clip_on=True)
        if a:
            ax.axvline(edges[a], color=SEGMENT_COLOUR, linewidth=1.2)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_yticks([])
    ax.set_ylabel("instruction", fontsize=8, rotation=0, ha="right", va="center")
    ax.tick_params(labelbottom=False, labelsize=7)


def _mark_segments(ax, ep: dict) -> None:
    """A dashed line where each instruction segment after the first starts."""
    edges = tick_edges(ep["times"])
    for a, _, _ in segments(ep)[1:]:
        ax.axvline(edges[a], color=SEGMENT_COLOUR, linewidth=0.9, linestyle="--")


def _curves(ax, times, values, names, dims, constant, label) -> None:
    cycle = plt_module().get_cmap("tab10")
    for k, d in enumerate(dims):
        ax.plot(times, values[:, d], linewidth=0.9, color=cycle(k % 10), label=names[d])
    if dims:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=6, frameon=False, borderaxespad=0)
    if constant:  # above the axes, never over a curve
        note = ", ".join(f"{names[d]}={values[0, d]:.3g}" for d in constant)
        lines = textwrap.wrap(f"constant in this episode (not drawn): {note}", 260)
        ax.set_title(
            "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else ""), loc="left", fontsize=6, color="#555"
        )
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(labelbottom=False, labelsize=7)


def _tokens(sub, ax, ep: dict) -> None:
    """Per-dimension bins as a dims x time grid, or (FAST) each chunk's token ids by position."""
    edges = tick_edges(ep["times"])
    if ep["tokens"] is not None:
        grid, ylabel, cbar = ep["tokens"].T.astype(np.float64), "token bin\nby dimension", "bin"
    else:
        seqs = [np.ravel(s) for s in ep["token_seqs"]]
        grid = np.full((max(1, *(len(s) for s in seqs)), len(seqs)), np.nan)  # blank past a chunk's end
        for i, s in enumerate(seqs):
            grid[: len(s), i] = s
        ylabel, cbar = f"{ep['tokenizer'] or 'token'} ids\nby position", "token id"
    mesh = ax.pcolormesh(edges, np.arange(grid.shape[0] + 1) - 0.5, grid, cmap="viridis", shading="flat")
    ax.set_ylim(grid.shape[0] - 0.5, -0.5)
    if ep["tokens"] is not None and grid.shape[0] <= NAMED_ROWS:
        ax.set_yticks(range(grid.shape[0]), ep["action_names"], fontsize=6)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    sub.colorbar(mesh, ax=ax, label=cbar, pad=0.01, fraction=0.04)
