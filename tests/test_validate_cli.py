"""validate finds problems and names shard, key and field; the CLI commands and their exit codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

from tests.helpers import edit_members, npy, replace_member
from trajshard.cli import main
from trajshard.reports.histogram import compute_histogram
from trajshard.reports.validation import validate_output


def test_clean_dataset_exit_0(ingested):
    result = CliRunner().invoke(main, ["validate", str(ingested)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: dataset")


def test_tampered_shard_is_reported(ingested, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ingested, out)
    shard = out / "shards" / "train-000000.tar"
    edit_members(shard, replace_member(".tokens.npy", lambda _: npy(np.full(7, 999, dtype=np.int32))))
    report = validate_output(out)
    text = [str(p) for p in report.problems]
    assert any("sha256" in t for t in text)
    assert any(
        "shards/train-000000.tar ep_000_000000 [tokens.npy]" in t and "outside the range" in t for t in text
    )
    result = CliRunner().invoke(main, ["validate", str(out), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["ok"] is False


def test_missing_and_duplicated_steps_are_reported(ingested, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ingested, out)
    (out / "meta" / "quarantine.jsonl").write_text('{"episode": "ep_001", "file": "x", "reason": "y"}\n')
    report = validate_output(out)
    text = " | ".join(str(p) for p in report.problems)
    assert "both written and quarantined" in text and "episodes_quarantined" in text


def test_validate_source_lists_problems_and_exit_codes(raw_copy, tmp_path):
    (raw_copy / "ep_001" / "episode.json").write_text('{"instruction": "", "success": 3}')
    (raw_copy / "ep_002" / "wrist.webm").write_bytes(b"not a video")
    result = CliRunner().invoke(main, ["validate", str(raw_copy)])
    assert result.exit_code == 1
    assert "ep_001 [episode.json]" in result.output and "ep_002 [wrist.webm]" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(main, ["validate", str(empty)]).exit_code == 2


def test_histogram_cli(ingested):
    h = compute_histogram(ingested)
    assert h.counts.shape == (7, 255) and h.counts.sum(axis=1).tolist() == [h.samples] * 7
    result = CliRunner().invoke(main, ["histogram", str(ingested)])
    assert result.exit_code == 0 and "gripper" in result.output and "dead" in result.output
    one = CliRunner().invoke(main, ["histogram", str(ingested), "--dim", "6", "--json"])
    doc = json.loads(one.output)
    assert doc["dims"][0]["name"] == "gripper" and sum(doc["dims"][0]["counts"]) == h.samples
    assert CliRunner().invoke(main, ["histogram", str(ingested), "--dim", "99"]).exit_code != 0


def test_ingest_cli_with_toml_config_and_refuses_existing_output(synthetic_raw, tmp_path):
    cfg = tmp_path / "job.toml"
    cfg.write_text('fps = 5.0\nimage_size = 64\nresize_mode = "pad"\ncameras = ["front"]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["ingest", str(synthetic_raw), str(out), "--config", str(cfg), "--image-size", "48", "--no-progress"]
        + ["--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["config"]["fps"] == 5.0 and info["config"]["image_size"] == 48  # flags win over TOML
    assert info["cameras"] == ["front"] and "wrist.jpg" not in info["features"]
    again = CliRunner().invoke(main, ["ingest", str(synthetic_raw), str(out)])
    assert again.exit_code != 0 and "already holds a dataset" in again.output
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 1\n")
    r = CliRunner().invoke(main, ["ingest", str(synthetic_raw), str(tmp_path / "o2"), "--config", str(bad)])
    assert r.exit_code != 0 and "unknown config keys" in r.output


def test_demo_command(tmp_path):
    demo = ["demo", str(tmp_path / "demo"), "--episodes", "2", "--seconds", "2", "--workers", "0"]
    result = CliRunner().invoke(main, demo)
    assert result.exit_code == 0, result.output
    assert "validated" in result.output and "occupancy" in result.output


def test_stats_cli_reports_counts_statistics_alignment(ingested):
    result = CliRunner().invoke(main, ["stats", str(ingested)])
    assert result.exit_code == 0, result.output
    assert "8 written" in result.output and "alignment" in result.output and "wrist" in result.output
    doc = json.loads(CliRunner().invoke(main, ["stats", str(ingested), "--json"]).output)
    # nearest frame of a 30 fps camera; ep_006 has per-frame timestamps with up to 8 ms of jitter
    assert doc["alignment"]["front"]["max_dt_s"] <= 1 / 60 + 0.008
    assert doc["alignment"]["wrist"]["max_dt_s"] <= 1 / 30 + 1e-3  # of a 15 fps camera
    assert doc["alignment"]["proprio"]["rate_hz_min"] > 90
    assert len(doc["streams"]["action"]["q99"]) == 7 and doc["quarantine"] == {}
