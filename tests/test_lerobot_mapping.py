"""LeRobot datasets as converters write them: other feature names read through ``mapping``, videos
under ``video/``, a declared codec that is not the files', and ``to_timestamp`` at the last frame."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.lerobot_v3 import FPS, write_v3
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import open_source

LENGTHS = (30, 45, 24)
MAPPING = {"state": ["state"], "action": ["actions"], "cameras": {"primary": "image"}}


def openpi_style(root) -> None:
    """write_v3's dataset renamed the way openpi's LIBERO converter names things, with its quirks."""
    write_v3(root, LENGTHS)
    data = root / "data" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(data)
    pq.write_table(
        t.rename_columns(
            [
                "state" if c == "observation.state" else "actions" if c == "action" else c
                for c in t.column_names
            ]
        ),
        data,
    )
    shutil.move(root / "videos" / "observation.images.top", root / "videos" / "image")
    shutil.move(root / "videos", root / "video")  # info.json still says videos/
    info = json.loads((root / "meta" / "info.json").read_text())
    f = info["features"]
    f["state"], f["actions"] = f.pop("observation.state"), f.pop("action")
    f["image"] = {**f.pop("observation.images.top"), "info": {"video.codec": "mpeg4"}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    eps_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    eps = pq.read_table(eps_path).to_pylist()
    for e in eps:
        old = (
            e.pop("videos/observation.images.top/chunk_index"),
            e.pop("videos/observation.images.top/file_index"),
        )
        e["videos/image/chunk_index"], e["videos/image/file_index"] = old
        e["videos/image/from_timestamp"] = e.pop("videos/observation.images.top/from_timestamp")
        # the converter's quirk: to_timestamp is the last frame's time, not the time after it
        e["videos/image/to_timestamp"] = e.pop("videos/observation.images.top/to_timestamp") - 1 / FPS
    pq.write_table(pa.Table.from_pylist(eps), eps_path)


def test_the_default_names_refuse_it_and_say_how_to_map(tmp_path):
    openpi_style(tmp_path / "src")
    with pytest.raises(EpisodeError, match="no 'observation.state' column .*'state'.* mapping"):
        open_source(tmp_path / "src", "lerobot").load("episode_000000")


def test_mapped_openpi_dataset_ingests_every_frame_and_says_what_it_fixed(tmp_path):
    openpi_style(tmp_path / "src")
    src = open_source(tmp_path / "src", "lerobot", mapping=MAPPING)
    ep = src.load("episode_000001")
    assert list(ep.cameras) == ["primary"] and len(ep.cameras["primary"].pts) == LENGTHS[1]  # no frame lost
    assert ep.streams["proprio"].values.shape == (LENGTHS[1], 2) and ep.streams["proprio"].names == (
        "x",
        "episode",
    )
    notes = " | ".join(src.notes)
    assert "under video/" in notes and "declares mpeg4, the files are h264" in notes
    assert "to_timestamp is its last frame's time" in notes
    out = tmp_path / "out"
    cfg = JobConfig.from_flags(workers=0, fps=FPS, format="lerobot", mapping=MAPPING)
    report = run_ingest(str(tmp_path / "src"), str(out), cfg, progress=False)
    assert report.samples == sum(LENGTHS) and report.episodes_quarantined == 0  # one sample per source frame
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["cameras"] == ["primary"] and any("video/" in n for n in info["source"]["notes"])
    assert validate_output(out).ok


def test_mapping_concatenates_columns_in_order_and_is_checked(tmp_path):
    openpi_style(tmp_path / "src")
    both = open_source(tmp_path / "src", "lerobot", mapping={**MAPPING, "state": ["state", "actions"]})
    assert both.load("episode_000000").streams["proprio"].values.shape == (LENGTHS[0], 4)
    with pytest.raises(ValueError, match="mapping.cameras names"):
        open_source(tmp_path / "src", "lerobot", mapping={"cameras": {"primary": "nope"}})
    with pytest.raises(ValueError, match="mapping.state must be a non-empty list"):
        JobConfig.from_flags(mapping={"state": "state"})
    with pytest.raises(ValueError, match="a raw source does not take a mapping"):
        open_source(tmp_path, "raw", mapping=MAPPING)
