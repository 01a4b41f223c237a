"""No silent loss: a dataset without images fails unless ``--no-images`` says so; cameras the camera
list drops and ticks dropped for lack of a frame are counted in info.json ``source.losses``, printed
by ingest, shown by ``trajshard stats`` and the card; a declared camera without files is shown by
``stats`` too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.helpers import shared_data
from tests.lerobot_v3 import FPS
from tests.test_lerobot_mapping import MAPPING, openpi_style
from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.io import read_json
from trajshard.pipelines.facts import IngestError
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources.synthetic import write_synthetic_dataset


def _ingest(*args: str):
    return CliRunner().invoke(main, ["ingest", *args, "--workers", "0", "--no-progress"])


def test_a_dataset_without_images_fails_unless_no_images_is_given(tmp_path):
    lift = str(shared_data("robosuite_hdf5") / "lift.hdf5")
    refused = _ingest(lift, str(tmp_path / "refused"), "--fps", "20")
    assert refused.exit_code == 1
    assert "the output would have no images" in refused.output and "--no-images" in refused.output
    assert not (tmp_path / "refused" / "meta").exists()  # failed before pass 2 wrote anything
    assert not list((tmp_path / "refused" / "shards").iterdir())
    ok = _ingest(lift, str(tmp_path / "lift"), "--fps", "20", "--no-images")
    assert ok.exit_code == 0, ok.output
    assert "warning: no images: the written episodes have no camera" in ok.output
    info = read_json(tmp_path / "lift" / "meta" / "info.json")
    assert info["cameras"] == [] and "no_images" not in info["config"]  # a run setting: not recorded
    assert "losses" not in info["source"]
    stats = CliRunner().invoke(main, ["stats", str(tmp_path / "lift")])
    assert "cameras: none" in stats.output and "left out: no images" in stats.output


def test_a_declared_camera_without_files_that_leaves_no_image_fails_with_the_reason(tmp_path):
    """GR00T's egoview has no video file: mapped as the only camera, the reader leaves it out and
    the job says why there are no images, before writing anything."""
    gr00t = shared_data("gr00t_pnp_lerobot_v20")
    cfg = JobConfig.from_flags(
        workers=0,
        keep_episodes=["episode_000000"],
        mapping={"cameras": {"ego": "observation.images.egoview"}},
    )
    with pytest.raises(IngestError, match=r"no images.*egoview.*no video file.*--no-images"):
        run_ingest(str(gr00t), str(tmp_path / "out"), cfg, progress=False)


def test_stats_shows_the_source_notes(tmp_path):
    gr00t = shared_data("gr00t_pnp_lerobot_v20")
    assert _ingest(str(gr00t), str(tmp_path / "g"), "--keep-episode", "episode_000001").exit_code == 0
    stats = CliRunner().invoke(main, ["stats", str(tmp_path / "g")])
    assert "note on the source: camera 'observation.images.egoview' is declared" in stats.output
    assert "left out:" not in stats.output  # nothing dropped: no losses, info.json as before
    assert "losses" not in read_json(tmp_path / "g" / "meta" / "info.json")["source"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "raw"
    write_synthetic_dataset(root, n_episodes=3, seconds=1.0)
    return root


def test_the_camera_list_counts_what_it_drops_and_quarantines_what_lacks_a_camera(raw, tmp_path):
    src = tmp_path / "raw"
    shutil.copytree(raw, src)
    (src / "ep_002" / "front.mp4").unlink()
    result = _ingest(str(src), str(tmp_path / "out"), "--camera", "front")
    assert result.exit_code == 0, result.output
    assert "cameras left out by the camera list (--camera): wrist (2 episodes)" in result.output
    meta = tmp_path / "out" / "meta"
    info = read_json(meta / "info.json")
    assert info["cameras"] == ["front"]
    assert info["source"]["losses"] == {"cameras_left_out": {"wrist": 2}}
    quarantined = [json.loads(line) for line in (meta / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["episode"], "['front'] are not in the episode" in q["reason"]) for q in quarantined] == [
        ("ep_002", True)
    ]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "cameras left out by the camera list (--camera): wrist (2 episodes)" in card
    assert validate_output(tmp_path / "out").ok  # source.losses is known to validate


def _retimed(raw, tmp_path, times):
    src = tmp_path / "raw"
    shutil.copytree(raw, src)
    np.save(src / "ep_001" / "front.timestamps.npy", np.asarray(times, dtype=np.float64))
    return src


def test_ticks_without_a_frame_are_counted_printed_and_shown(raw, tmp_path):
    """A camera with a 0.4 s hole (its frames re-timed by a timestamps file): the ticks in the hole
    have no frame within tolerance and are dropped, counted per camera."""
    k = np.arange(31)
    src = _retimed(raw, tmp_path, np.where(k < 15, k / 30, k / 30 + 0.4))
    out = tmp_path / "out"
    result = _ingest(str(src), str(out))
    assert result.exit_code == 0, result.output
    ticks = read_json(out / "meta" / "info.json")["source"]["losses"]["ticks_without_frame"]
    rows = pd.read_parquet(out / "meta" / "episodes.parquet")
    dropped = {
        (e, r["stream"]): r["dropped_ticks"]
        for e, a in zip(rows["episode"], rows["alignment"], strict=True)
        for r in a
        if r["dropped_ticks"]
    }
    assert set(dropped) == {("ep_001", "front")} and ticks == {"front": dropped[("ep_001", "front")]}
    assert ticks["front"] >= 3  # 0.6, 0.7, 0.8 s
    line = f"ticks dropped for lack of a frame within tolerance: front {ticks['front']}"
    assert line in result.output
    assert line in CliRunner().invoke(main, ["stats", str(out)]).output
    assert line in (out / "README.md").read_text()
    assert validate_output(out).ok


def test_a_video_shorter_than_the_streams_is_said_and_counted(raw, tmp_path):
    """A video that ends half-way (its 31 frames re-timed to 60 fps): the clock ends with it, and the
    other streams' last half second is not written; that is said and counted, not silent."""
    src = _retimed(raw, tmp_path, np.arange(31) / 60)
    out = tmp_path / "out"
    result = _ingest(str(src), str(out))
    assert result.exit_code == 0, result.output
    info = read_json(out / "meta" / "info.json")
    assert info["source"]["losses"] == {"streams_ended_early": {"front": 1}}
    note = "1 episode(s) end where their first stream ends, before the others"
    assert note in result.output and "longest: ep_001, front ends 0.5 s early" in result.output
    assert any(note in n for n in info["source"]["notes"])
    assert note in CliRunner().invoke(main, ["stats", str(out)]).output
    assert note in (out / "README.md").read_text()


def test_notes_a_reader_makes_while_loading_reach_the_dataset_once(tmp_path):
    """openpi's converter quirks in a LeRobot v3 dataset (a declared codec that is not the files', a
    to_timestamp at the last frame) are noticed while episodes load, in the tasks: ingest prints
    them, info.json keeps them, each once, though every task (here, every episode) noticed them."""
    openpi_style(tmp_path / "src")
    cfg = JobConfig.from_flags(workers=0, fps=FPS, mapping=MAPPING)
    run_ingest(str(tmp_path / "src"), str(tmp_path / "out"), cfg, progress=False)
    notes = read_json(tmp_path / "out" / "meta" / "info.json")["source"]["notes"]
    codec = [n for n in notes if "declares mpeg4, the files are h264" in n]
    last = [n for n in notes if "to_timestamp is its last frame's time" in n]
    assert len(codec) == 1 and len(last) == 1 and "first seen in episode_000000" in last[0]
    assert last[0] in (tmp_path / "out" / "README.md").read_text()
