"""`trajshard report`: the self-contained HTML page, what it embeds and samples, and the page itself in
Debian's headless Chromium (skipped, with the reason, where chromium or chromedriver is absent).

Screenshots go to the test's tmp dir, or to $TRAJSHARD_SCREENSHOTS when set (to look at them).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests import headless
from tests.conftest import shared_data
from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.page import EpisodeBudget, ReportOptions, build_report, write_report
from trajshard.reports.page.bins import iter_members, pick_shards
from trajshard.reports.page.episodes import pick_episodes
from trajshard.sources.synthetic import write_synthetic_dataset

QUALITY = {
    "schema": "trajshard.quality",
    "version": 1,
    "kind": "dataset",
    "checked": {"episodes": 8, "planned": 8, "frames_of": {"front": 8}},
    "counts": {"error": 0, "warning": 1, "info": 1},
    "checks": ["frames.frozen", "state.flat"],
    "findings": [
        {
            "code": "frames.frozen",
            "severity": "warning",
            "message": "front repeats one frame for a long stretch",
            "count": 2,
            "of": 8,
            "examples": [
                {"where": "ep_006", "detail": "steps 3-20"},
                {"where": "ep_002", "detail": "steps 1-9"},
            ],
        },
        {
            "code": "state.flat",
            "severity": "info",
            "message": "a state dim never moves",
            "count": 1,
            "of": 8,
            "examples": [{"where": "", "detail": "dim 5"}],
        },
    ],
}


def page_data(page: bytes) -> dict:
    m = re.search(rb'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def demo(synthetic_raw, tmp_path_factory) -> Path:
    """The 8 synthetic episodes (one with two instruction segments) ingested serially (read-only)."""
    out = tmp_path_factory.mktemp("report_demo") / "out"
    run_ingest(str(synthetic_raw), str(out), JobConfig.from_flags(workers=0), progress=False)
    return out


@pytest.fixture(scope="module")
def g1(tmp_path_factory) -> Path:
    """The real G1 LeRobot v2.1 data ingested serially: 6 episodes written, 94 quarantined (no video)."""
    src = shared_data("g1_lerobot_v21")
    out = tmp_path_factory.mktemp("report_g1") / "out"
    run_ingest(str(src), str(out), JobConfig.from_flags(workers=0), progress=False)
    return out


def shots_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("TRAJSHARD_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


# ------------------------------------------------------------------------------------- the page's content


def test_demo_page_is_self_contained_and_embeds_every_episode_bin_and_frame(demo):
    page, facts = build_report(demo)
    text = page.decode()
    assert "<script src=" not in text and "<link " not in text and "<iframe" not in text  # nothing fetched
    assert text.count("<script") == 3  # plotly.js, the data, the page's script
    data = page_data(page)
    info = json.loads((demo / "meta" / "info.json").read_text())
    samples = info["counts"]["samples"]
    # bins: every sample counted (small dataset), every dimension, with its action values
    bins = data["bins"]
    assert bins["exact"] and bins["samples"] == samples == facts.histogram_samples
    assert [d["name"] for d in bins["dims"]] == info["action_names"]
    for d in bins["dims"]:
        assert sum(d["counts"]) == samples and len(d["counts"]) == 255
        assert d["used"] + d["dead"] == 255
        assert all(lo <= c <= hi for lo, c, hi in zip(d["lower"], d["centre"], d["upper"], strict=True))
        assert d["token"][0] == 1 and d["rmse"] is not None and d["clip_rate"] is not None
    # episodes: all 8, each step's curves, every camera's frames, instruction segments
    assert [e["id"] for e in data["episodes"]] == [f"ep_{i:03d}" for i in range(8)]
    assert facts.episodes_embedded == facts.episodes_total == 8
    for e in data["episodes"]:
        assert e["x"] == list(range(e["steps"])) and len(e["action"]) == 7 and len(e["tokens"]) == 7
        assert len(e["state"][0]) == e["steps"]
        for cam in ("front", "wrist"):
            assert e["frames"][cam]["steps"] == list(range(e["steps"]))  # 8 x 38 x 2 frames < the budget
    assert len(data["episodes"][5]["segments"]) == 2  # ep_005 has two instructions
    assert facts.frames_embedded == 2 * samples
    # the tables
    for heading in ("Action bins", "Statistics and alignment", "Quarantine and findings", "Episodes"):
        assert f">{heading}</h2>" in text
    assert "No episode was quarantined." in text
    assert "Doctor findings</h3>" in text and "No finding." in text  # ingest wrote meta/quality.json


def test_frame_budget_and_thinned_curves_hold_whatever_the_episode_length(demo):
    budget = EpisodeBudget(episodes=3, max_frames=24, frame_size=48, curve_points=10)
    page, facts = build_report(demo, ReportOptions(budget=budget))
    data = page_data(page)
    assert facts.episodes_embedded == 3 and facts.frames_embedded <= 24
    assert [e["id"] for e in data["episodes"]] == ["ep_000", "ep_004", "ep_007"]  # spread, ends included
    for e in data["episodes"]:
        assert len(e["x"]) == 10 and e["x"][0] == 0 and e["x"][-1] == e["steps"] - 1
        assert all(len(f["steps"]) == 4 for f in e["frames"].values())  # 24 frames / (3 episodes x 2 cameras)


def test_bins_are_counted_over_a_sample_of_shards_when_the_dataset_is_large(demo):
    shards = json.loads((demo / "meta" / "info.json").read_text())["counts"]["shards"]
    page, facts = build_report(demo, ReportOptions(histogram_samples=100))
    bins = page_data(page)["bins"]
    assert not bins["exact"] and bins["shards"] < bins["shards_total"] == shards
    assert 100 <= bins["samples"] < bins["samples_total"]
    assert all(sum(d["counts"]) == bins["samples"] for d in bins["dims"])
    assert f"{bins['samples']:,} of {bins['samples_total']:,} samples" in page.decode()


def test_text_that_would_end_a_script_element_is_escaped_and_reads_back():
    from trajshard.reports.page.render import _script_safe

    doc = {"text": "</script><!-- </SCRIPT >"}
    safe = _script_safe(json.dumps(doc))
    assert "</script" not in safe.lower() and "<!--" not in safe
    assert json.loads(safe) == doc


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_member_reader_agrees_with_tarfile_and_skips_what_it_is_not_asked_for(tmp_path, fmt):
    long_key = "e" * 120 if fmt != tarfile.USTAR_FORMAT else "e" * 40
    members = [
        ("ep_000000.a.npy", b"x" * 700),
        ("ep_000000.front.jpg", b"\xff" * 5000),
        (f"dir/{long_key}_000001.tokens.npy", b"t" * 3),
        ("ep_000001.meta.json", b""),
    ]
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = list(iter_members(path, lambda k, f: True))
    assert got == [(n.rpartition("/")[2].split(".", 1)[0], n.split(".", 1)[1], d) for n, d in members]
    assert [f for _, f, _ in iter_members(path, lambda k, f: f != "front.jpg")] == [
        "a.npy",
        "tokens.npy",
        "meta.json",
    ]


def test_pick_shards_and_episodes_spread_evenly_and_deterministically():
    shards = [{"name": f"s{i}", "samples": 100} for i in range(100)]
    assert pick_shards(shards, 10_000) == shards
    chosen = pick_shards(shards, 1_000)
    assert len(chosen) == 10 and chosen[0]["name"] == "s0" and chosen[-1]["name"] == "s99"
    rows = [{"episode": f"ep_{i:06d}"} for i in range(100_000)]
    picked = [r["episode"] for r in pick_episodes(rows, 12, named=["ep_000123", "nope"])]
    assert len(picked) == 12 and "ep_000123" in picked and picked == sorted(picked)
    assert picked == [r["episode"] for r in pick_episodes(rows, 12, named=["ep_000123"])]
    assert "ep_000000" in picked and "ep_099999" in picked


def test_doctor_findings_are_shown_grouped_when_quality_json_is_present(demo, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo, out)
    (out / "meta" / "quality.json").write_text(json.dumps(QUALITY))
    page, facts = build_report(out, ReportOptions(budget=EpisodeBudget(episodes=4)))
    text = page.decode()
    assert facts.quality and "Doctor findings</h3>" in text
    assert "front repeats one frame for a long stretch" in text and "2 of 8" in text
    assert text.index("frames.frozen") < text.index("state.flat")  # warnings before notes
    ids = [e["id"] for e in page_data(page)["episodes"]]
    assert "ep_006" in ids  # the first episode a finding names is among those embedded


def test_cli_writes_out_report_html_by_default_and_html_file_when_asked(demo, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo, out)
    run = CliRunner().invoke(main, ["report", str(out)])
    assert run.exit_code == 0, run.output
    assert (out / "report.html").stat().st_size > 1_000_000
    assert "8 of 8 episodes embedded" in run.output and "doctor findings shown" in run.output
    target = tmp_path / "elsewhere" / "r.html"
    run = CliRunner().invoke(main, ["report", str(out), "--html", str(target), "--episodes", "2"])
    assert run.exit_code == 0, run.output
    assert len(page_data(target.read_bytes())["episodes"]) == 2
    run = CliRunner().invoke(main, ["validate", str(out)])
    assert run.exit_code == 0, run.output  # report.html in OUT is no problem for validate
    run = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert run.exit_code == 1 and "not a finished trajshard output" in run.output


def test_fast_tokenizer_page_says_there_are_no_bins(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_dataset(raw, n_episodes=2, seconds=2.0)
    out = tmp_path / "out"
    run_ingest(
        str(raw),
        str(out),
        JobConfig.from_flags(workers=0, tokenizer="fast", horizon=4, bins=64),
        progress=False,
    )
    page, facts = build_report(out)
    data = page_data(page)
    assert data["bins"] is None and facts.histogram_samples == 0
    assert "its tokens are not per-dimension bins" in page.decode()
    assert all(e["tokens"] is None and e["token_note"] for e in data["episodes"])


# ----------------------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def browser() -> None:
    """Skips, with the reason, where Debian's chromium or chromedriver (or selenium) is missing; named
    before a dataset fixture, it skips before that dataset is built."""
    why = headless.missing()
    if why:
        pytest.skip(why)


def scrub_and_check(path: Path, shots: Path, tag: str, limit_s: float = 5.0) -> dict:
    """Open the page, move the episode slider, and check from the page that every camera's frame and
    every curve's cursor changed, with no console error; screenshots at each stage."""
    with headless.chromium() as driver:
        # The first open in a fresh Chromium also compiles plotly.js; on a machine other jobs share, one
        # open can be slow for reasons not the page's, so the better of two opens is held to the limit.
        seconds = min(headless.open_report(driver, path), headless.open_report(driver, path))
        headless.screenshot(driver, shots / f"{tag}-top.png")
        headless.screenshot(driver, shots / f"{tag}-bins.png", "bins")
        before = headless.page_state(driver)
        headless.screenshot(driver, shots / f"{tag}-episode-start.png", "episodes")
        headless.drag_slider(driver, 0.75)
        after = headless.page_state(driver)
        headless.screenshot(driver, shots / f"{tag}-episode-scrubbed.png", "episodes")
        bins_drawn = driver.execute_script("return window.trajshardReport.binsDrawn")
        errors = headless.console_errors(driver)
    assert errors == []
    assert seconds < limit_s, f"{path} took {seconds:.2f}s to draw"
    assert before["tick"] == 0 and after["tick"] > 0 and int(after["slider"]) == after["tick"]
    assert before["frames"] and all(after["frames"][k] != v for k, v in before["frames"].items())
    assert set(before["cursors"].values()) == {0} and set(after["cursors"].values()) == {after["tick"]}
    assert bins_drawn > 0  # the histograms scrolled into view were drawn
    return after


def test_demo_report_in_chromium_slider_moves_frames_and_cursors(browser, demo, tmp_path):
    path, _ = write_report(demo, tmp_path / "demo.html")
    scrub_and_check(path, shots_dir(tmp_path), "demo")
    # another episode: the select loads it, the two-instruction episode shows its segments
    with headless.chromium() as driver:
        headless.open_report(driver, path)
        driver.execute_script(
            "const s = document.getElementById('episode-select'); s.value = '5';"
            "s.dispatchEvent(new Event('change'));"
        )
        headless.drag_slider(driver, 0.95)
        state = headless.page_state(driver)
        segments = driver.execute_script("return document.querySelectorAll('#segments .segment').length")
        headless.screenshot(driver, shots_dir(tmp_path) / "demo-episode-5.png", "episodes")
        assert headless.console_errors(driver) == []
    assert state["episode"] == 5 and segments == 2
    assert state["instruction"].startswith("“place the red block in the bowl”")


def test_real_g1_report_in_chromium(browser, g1, tmp_path):
    path, facts = write_report(g1, tmp_path / "g1.html")
    assert facts.episodes_embedded == 6 and facts.bytes < 20e6
    text = path.read_text()
    assert "94 of 100 episodes, by reason" in text and "the episode&#x27;s video file is missing" in text
    after = scrub_and_check(path, shots_dir(tmp_path), "g1")
    assert after["instruction"].startswith("“Pick up the yellow bottle on the table.”")


def test_a_few_hundred_episode_report_opens_fast_and_small(browser, tmp_path):
    """The 10,000-episode run is bench/report_scale.py (several minutes to build); this is its small
    version: 200 one-second episodes, bins counted over a sample of shards."""
    raw = tmp_path / "raw"
    write_synthetic_dataset(raw, n_episodes=200, seconds=1.0, width=32, height=32)
    out = tmp_path / "out"
    run_ingest(str(raw), str(out), JobConfig.from_flags(workers=0, image_size=32), progress=False)
    path, facts = write_report(out, options=ReportOptions(histogram_samples=1_000))
    assert facts.episodes_embedded == 12 and facts.bytes < 20e6
    assert facts.histogram_samples < facts.samples_total
    scrub_and_check(path, shots_dir(tmp_path), "scale200")
