"""The histogram pictures, measured on the drawn figures: `trajshard histogram --png` (a panel per
dimension) and ingest's meta/histogram.png (one map), on the real 44-D GR00T dataset (25 constant
dims, 5 two-valued hand dims, the others clipped at the 1st/99th percentile)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import LineCollection
from PIL import Image

from tests.helpers import shared_data
from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.histogram import Histogram, compute_histogram
from trajshard.reports.plots import DPI, EDGE_COLOUR, heatmap_figure, histogram_figure


@pytest.fixture(scope="module")
def gr00t(tmp_path_factory):
    out = tmp_path_factory.mktemp("gr00t_hist") / "out"
    run_ingest(
        str(shared_data("gr00t_pnp_lerobot_v20")),
        str(out),
        JobConfig.from_flags(workers=0, image_size=32),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def hist(gr00t) -> Histogram:
    return compute_histogram(gr00t)


@pytest.fixture(scope="module")
def grid(hist):
    fig = histogram_figure(hist)
    fig.canvas.draw()
    yield fig, fig.canvas.get_renderer()
    fig.clf()


def _panels(fig):
    """The per-dimension panels: visible axes with a bar chart (not secondary axes, not blanks)."""
    return [ax for ax in fig.axes if ax.axison and ax.patches]


def test_kinds_of_the_real_dims(hist):
    kinds = [hist.kind(d) for d in range(44)]
    assert kinds.count("constant") == 25
    assert [d for d, k in enumerate(kinds) if k == "two-valued"] == [29, 30, 31, 32, 33]
    for d in (29, 30, 31, 32, 33):  # a hand at its two extremes: every sample in an edge bin, none clipped
        s = hist.dim_summary(d)
        assert s["edge_share"] == 1.0 and s["clipped_share"] == 0.0
    assert hist.dim_summary(0)["clipped_share"] > 0
    assert hist.dim_summary(7)["entropy_bits"] == 0.0 and str(hist.dim_summary(7)["entropy_bits"]) == "0.0"


def test_title_overprints_no_panel(grid):
    fig, r = grid
    title = fig._suptitle.get_window_extent(r)
    for ax in _panels(fig):
        assert not title.overlaps(ax.get_tightbbox(r)), ax.get_title()  # tight bbox: titles, top axis


def test_constant_dims_get_a_note_not_a_panel(grid, hist):
    fig, _ = grid
    shown = sorted(int(ax.get_title().split()[0]) for ax in _panels(fig))
    assert shown == [d for d in range(44) if hist.kind(d) != "constant"]
    note = fig._supxlabel.get_text().replace("\n", " ")
    assert note.startswith("25 constant dims")
    for d in range(44):
        assert (f"{d} motor_{d}=" in note) == (hist.kind(d) == "constant")


def test_edge_bins_are_visible_inside_the_axes(grid, hist):
    fig, _ = grid
    for ax in _panels(fig):
        d = int(ax.get_title().split()[0])
        (edges,) = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_gid() == "edge-bins"]
        width_px = edges.get_linewidths()[0] * DPI / 72
        assert width_px >= 3
        for seg in edges.get_segments():
            x = ax.transData.transform(seg)[:, 0]
            assert ax.bbox.x0 + 1 <= x[0] - width_px / 2 and x[0] + width_px / 2 <= ax.bbox.x1 - 1
            b = 0 if seg[0, 0] == 0 else hist.counts.shape[1] - 1
            assert seg[1, 1] == hist.counts[d, b] > 0
        red = np.allclose(edges.get_colors()[0][:3], _rgb(EDGE_COLOUR))
        assert red == (hist.kind(d) != "two-valued"), ax.get_title()
        assert ("[two-valued]" in ax.get_title()) == (hist.kind(d) == "two-valued")


def test_axes_say_what_they_show(grid, hist):
    fig, _ = grid
    panels = _panels(fig)
    assert {ax.get_xlabel() for ax in panels[-4:]} == {"bin"}
    assert panels[0].get_ylabel() == "samples"
    for ax in panels:
        d = int(ax.get_title().split()[0])
        (top,) = ax.child_axes
        ticks = top.get_xticks()
        labels = [t.get_text() for t in top.get_xticklabels()]
        assert labels == [f"{hist.centres[d, int(b)]:.3g}" for b in ticks]
    assert hist.centres[0, 0] < hist.centres[0, -1]


def test_heatmap_colours_span_the_data(hist):
    fig = heatmap_figure(Histogram(hist.counts, hist.sq_err, hist.names, hist.samples, hist.guards))
    fig.canvas.draw()
    ax = fig.axes[0]
    (image,) = ax.images
    shown = [d for d in range(44) if hist.kind(d) != "constant"]
    share = hist.counts[shown] / hist.counts[shown].sum(axis=1, keepdims=True)
    assert image.get_array().shape == (len(shown), hist.counts.shape[1])
    assert image.norm.vmin == pytest.approx(share[share > 0].min())
    assert image.norm.vmax == pytest.approx(share.max())
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{d} motor_{d}" for d in shown]
    assert any(a.get_ylabel() == "share of samples" for a in fig.axes[1:])  # the colour bar
    (cells,) = [c for c in ax.collections if c.get_gid() == "edge-cells"]
    assert len(cells.get_offsets()) == int((share[:, [0, -1]] > 0).sum())
    assert "meta/histogram.png" in ax.get_title()
    fig.clf()


def test_cli_png(gr00t, tmp_path):
    png = tmp_path / "h.png"
    res = CliRunner().invoke(main, ["histogram", str(gr00t), "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert Image.open(png).size[0] >= 1600
    assert "clip%" in res.output and "two-valued" in res.output


def _rgb(hex_colour: str) -> tuple[float, ...]:
    return tuple(int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
