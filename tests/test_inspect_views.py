"""`trajshard inspect`: the .rrd of `--rerun`, read back with rerun-sdk's own reader, and the contact
sheet of `--png`, measured on the drawn figure (synthetic output; the real 44-D GR00T for many dims)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import QuadMesh

from tests.helpers import shared_data
from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.episode import load_episode, segments, summary
from trajshard.reports.sheet import GROUP, SEGMENT_COLOUR, contact_sheet_figure, tick_edges

EPISODE = "ep_005"  # the synthetic episode with two time-ranged instruction segments


@pytest.fixture(scope="module")
def gr00t(tmp_path_factory):
    out = tmp_path_factory.mktemp("gr00t_sheet") / "out"
    src = str(shared_data("gr00t_pnp_lerobot_v20"))
    run_ingest(src, str(out), JobConfig.from_flags(workers=0, image_size=32), progress=False)
    return out


@pytest.fixture(scope="module")
def fast_out(synthetic_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("fast_sheet") / "out"
    cfg = JobConfig.from_flags(workers=0, tokenizer="fast", horizon=4, bins=64, image_size=32)
    run_ingest(str(synthetic_raw), str(out), cfg, progress=False)
    return out


def _rrd_rows(path) -> dict[str, list]:
    """Per entity path of the .rrd's recording, its record batches, via rerun-sdk's RrdReader."""
    from rerun.chunk import RrdReader

    rows: dict[str, list] = {}
    for chunk in RrdReader(path).stream():
        rows.setdefault(chunk.entity_path, []).append(chunk.to_record_batch())
    return rows


def _column(batches: list, name: str) -> list:
    return [v for b in batches for v in b.column(name).to_pylist()]


def test_rerun_file_holds_the_episode(ingested, tmp_path):
    rrd = tmp_path / "ep.rrd"
    res = CliRunner().invoke(main, ["inspect", str(ingested), "--episode", EPISODE, "--rerun", str(rrd)])
    assert res.exit_code == 0, res.output
    ep = load_episode(ingested, EPISODE)
    n = len(ep["times"])
    assert n == ep["row"]["steps"]
    rows = _rrd_rows(rrd)
    per_tick = {f"/cameras/{c}" for c in ep["cameras"]} | {"/tokens", "/instruction"}
    for key, root in (("state", "state"), ("action", "action"), ("action", "token_bins")):
        per_tick |= {f"/{root}/{name}" for name in ep[f"{key}_names"]}
    assert set(rows) == per_tick | {"/instruction/changes", "/episode", "/__properties"}
    for path in per_tick:
        assert _column(rows[path], "tick") == list(ep["steps"]) and len(ep["steps"]) == n, path
    assert ep["action_names"] == ["joint0", "joint1", "joint2", "ee_x", "ee_y", "ee_z", "gripper"]
    values = [v[0] for v in _column(rows["/action/gripper"], "Scalars:scalars")]
    assert np.allclose(values, ep["action"][:, 6])
    assert _column(rows["/token_bins/ee_x"], "Scalars:scalars") == [[float(v)] for v in ep["tokens"][:, 3]]
    blobs = _column(rows["/cameras/front"], "EncodedImage:blob")
    assert bytes(blobs[5][0]) == ep["images"]["front"][5]
    assert [t.total_seconds() for t in _column(rows["/cameras/front"], "time")] == pytest.approx(ep["times"])
    segs = segments(ep)
    assert len(segs) == 2
    assert _column(rows["/instruction/changes"], "tick") == [int(ep["steps"][a]) for a, _, _ in segs]
    texts = [t[0] for t in _column(rows["/instruction/changes"], "TextLog:text")]
    assert [t.split(": ", 1)[1] for t in texts] == [s[2] for s in segs]
    assert [t[0] for t in _column(rows["/instruction"], "TextDocument:text")] == ep["instructions"]
    assert _column(rows["/episode"], "TextDocument:text") == [[summary(ep)]]


def test_rerun_file_of_fast_tokens(fast_out, tmp_path):
    rrd = tmp_path / "fast.rrd"
    res = CliRunner().invoke(main, ["inspect", str(fast_out), "--episode", EPISODE, "--rerun", str(rrd)])
    assert res.exit_code == 0, res.output
    rows = _rrd_rows(rrd)
    ep = load_episode(fast_out, EPISODE)
    assert not any(p.startswith("/token_bins") for p in rows)  # FAST ids are not per dimension
    shapes = [t[0]["shape"] for t in _column(rows["/tokens"], "Tensor:data")]
    assert shapes == [list(s.shape) for s in ep["token_seqs"]]


def test_rerun_without_the_extra(ingested, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rerun", None)  # `import rerun` raises ImportError, as when absent
    rrd = tmp_path / "ep.rrd"
    res = CliRunner().invoke(main, ["inspect", str(ingested), "--episode", EPISODE, "--rerun", str(rrd)])
    assert res.exit_code == 1
    assert res.output.strip() == "Error: --rerun needs the optional rerun-sdk: pip install 'trajshard[rerun]'"
    assert not rrd.exists()


def _series_axes(fig):
    return [ax for ax in fig.axes if ax.get_legend() is not None]


def _sheet(out, episode):
    ep = load_episode(out, episode)
    fig = contact_sheet_figure(ep)
    fig.canvas.draw()
    return ep, fig


def test_sheet_marks_segments_and_names_curves(ingested):
    ep, fig = _sheet(ingested, EPISODE)
    axes = _series_axes(fig)
    assert len(axes) == 2  # 7 state dims, 7 action dims: one panel each
    for ax, key in zip(axes, ("state", "action"), strict=True):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ep[f"{key}_names"]
        change = tick_edges(ep["times"])[segments(ep)[1][0]]
        marks = [ln for ln in ax.get_lines() if ln.get_color() == SEGMENT_COLOUR]
        assert [ln.get_xdata()[0] for ln in marks] == [change]
    strip_texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for k, (_, _, text) in enumerate(segments(ep)):
        assert f" {k + 1}: {text}" in strip_texts
    r = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(r)
    assert not any(title.overlaps(ax.get_tightbbox(r)) for ax in fig.axes if ax.axison)
    fig.clf()


def test_sheet_token_cells_sit_on_their_ticks(ingested):
    ep, fig = _sheet(ingested, EPISODE)
    (ax,) = [a for a in fig.axes if a.get_ylabel().startswith("token bin")]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    x = mesh.get_coordinates()[0, :, 0]
    assert np.allclose((x[1:] + x[:-1]) / 2, ep["times"])  # cell i centred on tick i's time
    assert np.array_equal(mesh.get_array().reshape(-1, len(ep["times"])), ep["tokens"].T)
    assert any(a.get_ylabel() == "bin" for a in fig.axes)  # the colour bar
    fig.clf()


def test_sheet_of_many_dims_groups_named_curves(gr00t):
    ep, fig = _sheet(gr00t, "episode_000001")
    for key in ("state", "action"):
        axes = [ax for ax in _series_axes(fig) if ax.get_ylabel().startswith(key)]
        legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
        assert all(len(names) <= GROUP for names in legends)
        moving = [n for d, n in enumerate(ep[f"{key}_names"]) if np.ptp(ep[key][:, d]) > 0]
        assert [n for names in legends for n in names] == moving
        note = axes[0].get_title(loc="left")
        constant = [n for n in ep[f"{key}_names"] if n not in moving]
        assert constant and all(f"{n}=" in note for n in constant[:5])
    fig.clf()


def test_sheet_shows_fast_ids_per_chunk(fast_out):
    ep, fig = _sheet(fast_out, EPISODE)
    (ax,) = [a for a in fig.axes if a.get_ylabel().startswith("fast ids")]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    grid = np.ma.filled(mesh.get_array(), np.nan).reshape(-1, len(ep["times"]))
    longest = max(len(s) for s in ep["token_seqs"])
    assert grid.shape[0] == longest
    for i, seq in enumerate(ep["token_seqs"]):
        assert np.array_equal(grid[: len(seq), i], seq)
        assert np.isnan(grid[len(seq) :, i]).all()
    assert any(a.get_ylabel() == "token id" for a in fig.axes)
    assert ep["tokenizer"] == "fast"
    fig.clf()
