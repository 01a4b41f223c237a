"""``trajshard describe``: the listing of each format with a describer, the TOML template (written by
our own emitter, read back by tomllib), and a template that ingests the source unedited into the
same shards as a default ingest."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import trajshard.sources.raw as raw_module
from tests.helpers import shared_data, tree_digest
from trajshard.cli import main
from trajshard.config import JobConfig, load_config
from trajshard.pipelines.ingest import run_ingest
from trajshard.sources.describe import (
    DescribeError,
    describe_source,
    mapping_toml,
    render_listing,
    toml_value,
)
from trajshard.sources.listing import Listing
from trajshard.sources.synthetic import write_synthetic_dataset


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'quote " and back\\slash',
        "tab\tnew\nline \x01 \x7f",
        "ünïcode ✓ 中文",
        ["a", "b[0:7]", "/topic:position[0:6]"],
        {"primary": "image", "with.dot": "x", "space key": "y"},
        {"column": "task_index"},
        [1, 2.5, True, False],
        {},
    ],
)
def test_toml_values_round_trip_through_tomllib(value):
    assert tomllib.loads(f"v = {toml_value(value)}\n")["v"] == value


def test_toml_refuses_what_it_cannot_write():
    for bad in (float("nan"), None, object()):
        with pytest.raises(ValueError):
            toml_value(bad)


def _listing(fmt: str) -> Listing:
    mapping = {
        "state": ["observation.state[0:7]", "observation.state[7:13]"],
        "cameras": {"ego_view": "observation.images.ego_view", "odd name": "x"},
        "instruction": {"column": "task_index"},
    }
    return Listing(fmt, 3, "e0", (), mapping, {"fps": 20.0}, ("a note\nover two lines",))


def test_template_is_the_mapping_for_a_mapped_format_and_empty_for_the_others():
    active = tomllib.loads(mapping_toml(_listing("lerobot"), "src"))
    assert active == {"mapping": _listing("lerobot").mapping}
    stepped = mapping_toml(_listing("rlds"), "src")
    assert tomllib.loads(stepped) == {"mapping": _listing("rlds").mapping}
    assert "source_fps = <Hz>" in stepped  # step-indexed: the rate the source needs is asked for
    text = mapping_toml(_listing("raw"), "src")
    assert tomllib.loads(text) == {"mapping": {}}
    assert "# state = " in text and "takes no mapping yet" in text and "source_fps" not in text
    assert "#   - a note over two lines" in text


def test_raw_source_listing_and_cli(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_dataset(raw, n_episodes=2, seconds=1.0)
    listing = describe_source(raw)
    keys = {k.key: k for k in listing.keys}
    assert (listing.format, listing.episodes, listing.example) == ("raw", 2, "ep_000")
    assert keys["proprio"].kind == "numeric" and keys["proprio"].shape == (7,)
    assert keys["proprio"].rate_hz == pytest.approx(100, rel=0.1)
    assert keys["action"].rate_hz == pytest.approx(20, rel=0.01)
    front, wrist = keys["front"], keys["wrist"]
    assert (front.kind, front.dtype, front.shape) == ("camera", "h264", (120, 160, 3))
    assert front.count == 31 and front.rate_hz == pytest.approx(30) and "front.mp4" in front.detail
    assert wrist.dtype == "vp9" and wrist.span_s[0] == pytest.approx(0.25)
    assert "instruction" in keys["episode.json"].detail
    mapping_file = tmp_path / "m.toml"
    result = CliRunner().invoke(main, ["describe", str(raw), "--write-mapping", str(mapping_file)])
    assert result.exit_code == 0, result.output
    assert "front" in result.output and "camera" in result.output and "100" in result.output
    # raw takes no mapping yet: the written file holds an empty [mapping], and ingest accepts it
    assert load_config(None, mapping=str(mapping_file)).source.mapping == {}


def test_a_format_without_a_describer_is_named(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_synthetic_dataset(raw, n_episodes=1, seconds=0.5)
    monkeypatch.delattr(raw_module, "describe")
    with pytest.raises(DescribeError, match="cannot list a raw source yet"):
        describe_source(raw)
    result = CliRunner().invoke(main, ["describe", str(raw)])
    assert result.exit_code == 1 and "cannot list a raw source yet" in result.output


def test_describe_refuses_an_unknown_layout(tmp_path):
    (tmp_path / "x.txt").write_text("nothing")
    result = CliRunner().invoke(main, ["describe", str(tmp_path)])
    assert result.exit_code == 1 and "cannot tell its format" in result.output


def test_g1_listing_shows_the_missing_videos():
    listing = describe_source(shared_data("g1_lerobot_v21"))
    keys = {k.key: k for k in listing.keys}
    assert listing.episodes == 100 and listing.example == "episode_000028"
    state = keys["observation.state"]
    assert (state.kind, state.dtype, state.shape, state.count) == ("numeric", "float32", (26,), 278)
    assert state.names[0] == "kLeftShoulderPitch" and state.rate_hz == pytest.approx(30, rel=1e-3)
    cam = keys["observation.images.cam_high"]
    assert (cam.kind, cam.shape, cam.count) == ("camera", (480, 640, 3), 278) and "MB" in cam.detail
    assert keys["task_index"].kind == "text" and "yellow bottle" in keys["task_index"].detail
    assert any("video files for 6 of 100 episodes" in n for n in listing.notes)
    assert listing.mapping["cameras"] == {"cam_high": "observation.images.cam_high"}


def test_bridge_listing():
    listing = describe_source(shared_data("bridge_rlds"), source_fps=5.0)
    keys = {k.key: k for k in listing.keys}
    assert listing.episodes == 25
    assert [k.key for k in listing.keys if k.kind == "camera"] == [
        f"steps/observation/image_{i}" for i in (1, 0, 2, 3)
    ]
    assert keys["steps/observation/state"].shape == (7,) and keys["steps/action"].count == 10
    assert keys["steps/action"].span_s == (0.0, 1.8)
    assert "instruction candidate" in keys["steps/language_instruction"].detail
    assert keys["episode_metadata/file_path"].count is None
    assert listing.settings == {"source_fps": 5.0}
    assert "source_fps = 5.0" in render_listing(listing)
    assert listing.mapping == {
        "state": ["steps/observation/state"],
        "action": ["steps/action"],
        "cameras": {f"image_{i}": f"steps/observation/image_{i}" for i in range(4)},
        "instruction": {"column": "steps/language_instruction"},
    }
    assert not any("guessed" in n for n in listing.notes)


def test_bridge_template_ingests_unedited_into_the_same_shards(tmp_path):
    """The RLDS template, written by the CLI and read back as a mapping file, gives the shards and the
    tokenizer of a default ingest byte for byte (the statistics differ only in the dimension names a
    mapping gives, ``steps/action[i]``)."""
    source = shared_data("bridge_rlds")
    mapping_file = tmp_path / "bridge.toml"
    args = ["describe", str(source), "--source-fps", "5", "--write-mapping", str(mapping_file)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    flags = dict(workers=0, fps=5, keep_episodes=["train_00000_000003", "train_00000_000017"])
    plain = run_ingest(str(source), str(tmp_path / "plain"), JobConfig.from_flags(**flags), progress=False)
    cfg = load_config(None, mapping=str(mapping_file), **flags)
    assert cfg.source.mapping["cameras"]["image_3"] == "steps/observation/image_3"
    mapped = run_ingest(str(source), str(tmp_path / "mapped"), cfg, progress=False)
    assert plain.samples == mapped.samples == 20
    assert _shards(tmp_path / "plain") == _shards(tmp_path / "mapped")
    tokenizer = "meta/tokenizer.json"
    assert (tmp_path / "plain" / tokenizer).read_bytes() == (tmp_path / "mapped" / tokenizer).read_bytes()


def test_rlds_template_guesses_split_state_features_and_ingests_them(tmp_path):
    """No steps/observation/state (joint_pos and gripper apart): the defaults read no episode; the
    template takes the numeric observation features in order, says it guessed, and ingests them."""
    from tests.test_rlds import split_rlds

    split_rlds(tmp_path / "src")
    listing = describe_source(tmp_path / "src", source_fps=5.0)
    assert listing.example == "train_00000_000000"  # read through the template's guesses
    assert listing.mapping == {
        "state": ["steps/observation/joint_pos", "steps/observation/gripper"],
        "action": ["steps/action"],
        "cameras": {"image": "steps/observation/image", "wrist_image": "steps/observation/wrist_image"},
        "instruction": {"column": "steps/language_instruction"},
    }
    assert any("mapping.state guessed as" in n for n in listing.notes)
    keys = {k.key: k for k in listing.keys}
    assert keys["steps/observation/joint_pos"].count == 10 and keys["episode_metadata/task"].kind == "text"
    cfg = JobConfig.from_flags(workers=0, fps=5, mapping=listing.mapping)
    report = run_ingest(str(tmp_path / "src"), str(tmp_path / "out"), cfg, progress=False)
    assert (report.episodes_written, report.samples) == (3, 30)


def _shards(out: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(out).items() if k.startswith("shards/")}


def test_gr00t_template_ingests_unedited_into_the_same_bytes(tmp_path):
    """modality.json's slices spelled out, the camera without files kept (the reader leaves it out,
    noted as without a mapping), task_index as the instruction: the shards, statistics and tokenizer
    are those of a default ingest."""
    source = shared_data("gr00t_pnp_lerobot_v20")
    mapping_file = tmp_path / "gr00t.toml"
    result = CliRunner().invoke(main, ["describe", str(source), "--write-mapping", str(mapping_file)])
    assert result.exit_code == 0, result.output
    written = tomllib.loads(mapping_file.read_text())["mapping"]
    assert written["state"][0] == "observation.state[0:7]" and len(written["state"]) == 8
    flags = dict(workers=0, keep_episodes=["episode_000001"])
    plain = run_ingest(str(source), str(tmp_path / "plain"), JobConfig.from_flags(**flags), progress=False)
    cfg = load_config(None, mapping=str(mapping_file), **flags)
    mapped = run_ingest(str(source), str(tmp_path / "mapped"), cfg, progress=False)
    assert plain.samples == mapped.samples > 0
    assert _shards(tmp_path / "plain") == _shards(tmp_path / "mapped")
    for name in ("stats.json", "tokenizer.json"):
        assert (tmp_path / "plain/meta" / name).read_bytes() == (tmp_path / "mapped/meta" / name).read_bytes()
    info = (tmp_path / "mapped/meta/info.json").read_text()
    assert "observation.images.egoview' is declared in meta/info.json but no video file" in info


def test_an_openpi_style_dataset_gets_a_guessed_template_that_ingests_unedited(tmp_path):
    """LeRobot v3 with openpi's names (state, actions, image) and its quirks: without a mapping the
    reader refuses it; describe guesses state and action from the column names (noted), and the
    written template ingests every frame."""
    from tests.lerobot_v3 import FPS
    from tests.test_lerobot_mapping import LENGTHS, openpi_style

    openpi_style(tmp_path / "src")
    listing = describe_source(tmp_path / "src")
    keys = {k.key: k for k in listing.keys}
    assert listing.mapping["state"] == ["state"] and listing.mapping["action"] == ["actions"]
    assert listing.mapping["cameras"] == {"image": "image"}
    assert any("mapping.state guessed as ['state']" in n for n in listing.notes)
    assert keys["image"].kind == "camera" and keys["image"].count == LENGTHS[0]  # the last frame kept
    mapping_file = tmp_path / "m.toml"
    result = CliRunner().invoke(
        main, ["describe", str(tmp_path / "src"), "--write-mapping", str(mapping_file)]
    )
    assert result.exit_code == 0, result.output
    cfg = load_config(None, mapping=str(mapping_file), workers=0, fps=FPS)
    report = run_ingest(str(tmp_path / "src"), str(tmp_path / "out"), cfg, progress=False)
    assert report.samples == sum(LENGTHS) and report.episodes_quarantined == 0
