"""End to end, serially and on local Ray: shards readable by webdataset and tarfile, deterministic,
decodable tokens."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import webdataset as wds

from tests.helpers import shard_urls, tree_digest
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.tokenizers import decode

EXPECTED_FIELDS = {"front.jpg", "wrist.jpg", "state.npy", "action.npy", "tokens.npy", "meta.json"}


def test_output_validates_and_counts_reconcile(ingested):
    report = validate_output(ingested)
    assert report.ok, report.problems
    info = json.loads((ingested / "meta" / "info.json").read_text())
    c = info["counts"]
    assert c["episodes_input"] == 8 and c["episodes_written"] == 8 and c["episodes_quarantined"] == 0
    assert c["samples"] == report.samples > 8 * 25
    assert info["features"]["front.jpg"]["shape"] == [224, 224, 3]
    assert (ingested / "README.md").read_text().startswith("# trajshard dataset")


def test_shards_open_with_webdataset_and_tarfile(ingested):
    urls = shard_urls(ingested)
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert samples
    for s in samples:
        assert EXPECTED_FIELDS <= set(s)
        assert s["front.jpg"].shape == (224, 224, 3) and s["front.jpg"].dtype == np.uint8
        assert s["state.npy"].shape == (7,) and s["action.npy"].dtype == np.float32
        assert s["meta.json"]["instruction"]
    with tarfile.open(urls[0]) as tar:
        members = tar.getmembers()
        assert all(m.mtime == 0 and m.uname == "trajshard" and m.uid == 0 for m in members)
        first = tar.extractfile(members[0]).read()
    assert members[0].name.endswith(".action.npy")  # fields sorted within a sample
    assert np.load(io.BytesIO(first), allow_pickle=False).shape == (7,)


def test_tokens_decode_to_actions_with_tokenizer_json_only(ingested):
    tok = json.loads((ingested / "meta" / "tokenizer.json").read_text())
    low, high = np.array(tok["normalization"]["low"]), np.array(tok["normalization"]["high"])
    half_bin = (high - low) / (tok["bins"] - 1) / 2
    for s in wds.WebDataset(shard_urls(ingested), shardshuffle=False).decode():
        action = s["action.npy"].astype(np.float64)
        inside = (action >= low) & (action <= high)
        err = np.abs(decode(s["tokens.npy"], tok) - action)
        assert np.all(err[inside] <= half_bin[inside] * (1 + 1e-5) + 1e-6)


def test_frames_show_the_aligned_state(ingested):
    """The synthetic front camera draws a progress bar along its bottom H // 30 rows
    (sources/synthetic.py, ``_draw_clock``): at frame time t, columns 0 .. int((W - 1) * t / seconds)
    blue (80, 170, 255), the others grey (50, 50, 50). Here W x H = 160 x 120 and seconds = 3
    (conftest's ``synthetic_raw``), stretched to 224 x 224: 1.4 output pixels a column.

    In every sample the bar is as long as its tick time (meta.json "time") makes it, within 4 pixels:
    the nearest frame of the 30 fps camera is at most 1/60 s from the tick (+ 8 ms of timestamp jitter
    in ep_006), 1.3 columns; int() ends the bar within half a column of (W - 1) * t / seconds + 0.5;
    1.8 columns are 2.5 pixels, and JPEG and resizing blur the bar's end by about a pixel. A frame one
    tick (0.1 s) off moves the end by 7.4 pixels."""
    width, height, seconds, size = 160, 120, 3.0, 224
    bar_rows = slice(round((height - height // 30) * size / height) + 2, size - 1)  # inside the bar
    grey, blue = 50.0, 0.299 * 80 + 0.587 * 170 + 0.114 * 255  # luma of the bar's two colours
    checked = 0
    for s in wds.WebDataset(shard_urls(ingested), shardshuffle=False).decode("rgb8"):
        t = s["meta.json"]["time"]
        luma = (s["front.jpg"][bar_rows].astype(np.float64) @ [0.299, 0.587, 0.114]).mean(axis=0)
        lit = np.flatnonzero(luma > (grey + blue) / 2)
        assert lit.tolist() == list(range(len(lit))), (s["__key__"], lit)  # one bar from the left edge
        expected = ((width - 1) * min(t / seconds, 1.0) + 0.5) * size / width
        assert abs(len(lit) - expected) <= 4, (s["__key__"], t, len(lit), expected)
        checked += 1
    assert checked > 8 * 25


def test_byte_identical_across_runs_and_worker_counts(synthetic_raw, tmp_path, ray_session):
    """Small tasks (several groups, run concurrently by 2 workers) and a small shard cap: the same bytes
    from two runs on 2 Ray workers, one on 1 and one serially in this process (no Ray)."""
    digests = []
    for name, workers in (("two_a", 2), ("two_b", 2), ("one", 1), ("serial", 0)):
        cfg = JobConfig.from_flags(workers=workers, task_steps=60, shard_size="300KB", image_size=96)
        run_ingest(str(synthetic_raw), str(tmp_path / name), cfg, progress=False)
        digests.append(tree_digest(tmp_path / name))
    assert len([k for k in digests[0] if k.startswith("shards/")]) >= 4
    assert digests[0] == digests[1] == digests[2] == digests[3]


def test_shard_size_cap_splits_shards(synthetic_raw, tmp_path):
    out = tmp_path / "small"
    run_ingest(
        str(synthetic_raw),
        str(out),
        JobConfig.from_flags(workers=0, shard_size="400KB", image_size=96),
        progress=False,
    )
    manifest = json.loads((out / "meta" / "manifest.json").read_text())
    assert len(manifest["shards"]) > 2
    for s in manifest["shards"]:
        assert s["bytes"] <= 400_000 and (out / s["name"]).stat().st_size == s["bytes"]
    names = [s["name"] for s in manifest["shards"]]
    assert names == [f"shards/train-{i:06d}.tar" for i in range(len(names))]
    assert validate_output(out).ok


def test_action_chunks_with_horizon(synthetic_raw, tmp_path):
    out = tmp_path / "chunks"
    run_ingest(
        str(synthetic_raw),
        str(out),
        JobConfig.from_flags(workers=0, horizon=4, image_size=64),
        progress=False,
    )
    assert validate_output(out).ok
    samples = [
        s
        for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode()
        if s["meta.json"]["episode"] == "ep_000"
    ]
    last = samples[-1]
    assert last["action_chunk.npy"].shape == (4, 7) and last["tokens.npy"].shape == (4, 7)
    assert last["action_chunk_mask.npy"].tolist() == [True, False, False, False]
    np.testing.assert_array_equal(
        samples[-3]["action_chunk.npy"][:3], np.stack([s["action.npy"] for s in samples[-3:]])
    )


def test_quantile_tokenizer_vocab_and_gripper_end_to_end(synthetic_raw, tmp_path):
    out = tmp_path / "q"
    cfg = JobConfig.from_flags(
        workers=0,
        tokenizer="quantile",
        bins=32,
        vocab="openvla:32000",
        image_size=64,
        gripper={"dim": 6, "threshold": 0.5},
    )
    run_ingest(str(synthetic_raw), str(out), cfg, progress=False)
    assert validate_output(out).ok
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["gripper"]["closed_when"] == "above" and info["vocab"]["spec"] == "openvla:32000"
    rt = json.loads((out / "meta" / "roundtrip.json").read_text())
    assert rt["count"] == info["counts"]["samples"] and len(rt["dims"]) == 7
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode():
        assert s["action.npy"][6] in (0.0, 1.0)
        np.testing.assert_array_equal(s["token_ids.npy"], 31999 - s["tokens.npy"])  # tokens from 0
        assert s["tokens.npy"].max() <= 31


def test_fast_tokenizer_end_to_end(synthetic_raw, tmp_path):
    out = tmp_path / "fast"
    cfg = JobConfig.from_flags(workers=0, tokenizer="fast", horizon=8, bins=300, image_size=48)
    run_ingest(str(synthetic_raw), str(out), cfg, progress=False)
    report = validate_output(out)
    assert report.ok, report.problems
    tok = json.loads((out / "meta" / "tokenizer.json").read_text())
    rt = json.loads((out / "meta" / "roundtrip.json").read_text())
    assert rt["decode_failures"] == 0 and rt["tokens"]["mean_tokens"] < 8 * 7
    s = next(iter(wds.WebDataset(shard_urls(out), shardshuffle=False).decode()))
    chunk = decode(s["tokens.npy"], tok)
    assert chunk.shape == (8, 7)
