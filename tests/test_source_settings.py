"""A source is checked with the settings the ingest will use, and what its reader leaves out is said."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import shared_data

from trajshard.cli import main


def test_validate_source_reads_the_job_config(tmp_path):
    gr00t = str(shared_data("gr00t_pnp_lerobot_v20"))
    (tmp_path / "job.toml").write_text('fps = 5.0\nformat = "lerobot"\n')
    plain = CliRunner().invoke(main, ["validate", gr00t, "--json"])
    slow = CliRunner().invoke(main, ["validate", gr00t, "--json", "--config", str(tmp_path / "job.toml")])
    assert plain.exit_code == 0 and slow.exit_code == 0
    samples = [json.loads(r.output)["samples"] for r in (plain, slow)]
    assert samples[0] > 1.9 * samples[1]  # 10 Hz against 5 Hz
    wrong = CliRunner().invoke(main, ["validate", gr00t, "--format", "raw"])
    assert wrong.exit_code == 1


def test_ingest_says_what_the_source_left_out(tmp_path):
    gr00t = str(shared_data("gr00t_pnp_lerobot_v20"))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["ingest", gr00t, str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "warning: source: camera 'observation.images.egoview' is declared" in result.output
    info = json.loads((out / "meta" / "info.json").read_text())
    assert any("egoview" in n for n in info["source"]["notes"])
    assert "note on the source: camera 'observation.images.egoview'" in (out / "README.md").read_text()


def test_a_missing_instruction_names_the_file_it_should_come_from():
    import numpy as np

    from trajshard.schemas.episode import Episode, Stream, validate_episode

    t = np.arange(5) / 10
    streams = {"proprio": Stream("proprio", t, np.zeros((5, 2), np.float32))}
    bag = Episode("ep", (), streams, {}, instruction_file="ep.mcap")
    assert [(p.field, p.message) for p in validate_episode(bag)] == [("ep.mcap", "no instruction text")]
    assert validate_episode(Episode("ep", (), streams, {}))[0].field == "episode.json"  # the raw layout's


def test_the_camera_rule_is_said_not_silent(raw_copy, tmp_path):
    (raw_copy / "ep_000" / "wrist.webm").unlink()
    meta = json.loads((raw_copy / "ep_000" / "episode.json").read_text())
    meta.pop("offsets")  # they name the wrist camera
    (raw_copy / "ep_000" / "episode.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(main, ["ingest", str(raw_copy), str(tmp_path / "a"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "episodes differ in shape: 7 with cameras ['front', 'wrist']" in result.output
    assert "1 with cameras ['front']" in result.output and "--camera" in result.output
    picked = CliRunner().invoke(
        main, ["ingest", str(raw_copy), str(tmp_path / "b"), "--workers", "0", "--camera", "front"]
    )
    assert picked.exit_code == 0 and "quarantined 0 of 8" in picked.output
    assert "cameras left out by the camera list (--camera): wrist (7 episodes)" in picked.output
    info = json.loads((tmp_path / "b" / "meta" / "info.json").read_text())
    assert any("wrist (7 episodes)" in n for n in info["source"]["notes"])


def test_messages_for_a_missing_an_empty_and_an_interrupted_source_or_out(tmp_path):
    missing = CliRunner().invoke(
        main, ["ingest", str(tmp_path / "nope"), str(tmp_path / "o"), "--workers", "0"]
    )
    assert missing.exit_code == 1 and "nope: does not exist" in missing.output
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(
        main, ["ingest", str(tmp_path / "empty"), str(tmp_path / "o"), "--format", "raw", "--workers", "0"]
    )
    assert empty.exit_code == 1 and "holds no episode" in empty.output and not (tmp_path / "o").exists()
    (tmp_path / "half" / ".trajshard").mkdir(parents=True)
    (tmp_path / "half" / ".trajshard" / "plan.json").write_text("{}")
    half = CliRunner().invoke(main, ["validate", str(tmp_path / "half")])
    assert half.exit_code == 2 and "--resume" in half.output
