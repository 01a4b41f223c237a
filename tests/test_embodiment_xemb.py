"""The embodiment section: checked config, recorded in info.json and the card, slices checked against
the data (real Bridge and robosuite data, ingested serially)."""

from __future__ import annotations

import copy

import pytest
from conftest import shared_data

from trajshard.config import FLAGS, JobConfig, load_config
from trajshard.io import read_json
from trajshard.pipelines.embodiment import EmbodimentConfig, stored_intrinsics
from trajshard.pipelines.facts import IngestError
from trajshard.pipelines.frames import ImageConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.schemas.metadata import validate_metadata

BRIDGE_EMBODIMENT = {
    "embodiment": "widowx",
    "control_rate": 5.0,
    "action_space": "eef",
    "action_mode": "delta",
    "action_frame": "base",
    "action_layout": {"arm": [0, 6], "gripper": [6, 7]},
    "state_layout": {"arm": [0, 6], "gripper": [6, 7]},
    "camera_roles": {"image_0": "primary", "image_1": "secondary"},
    "intrinsics": {"image_0": {"fx": 50.0, "fy": 50.0, "cx": 32.0, "cy": 32.0, "width": 64, "height": 64}},
}


@pytest.fixture(scope="module")
def bridge_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "bridge"
    cfg = JobConfig.from_flags(workers=0, image_size=96, **BRIDGE_EMBODIMENT)
    run_ingest(str(shared_data("bridge_rlds")), str(out), cfg, progress=False)
    return out


def test_the_section_has_flat_keys_and_checks_its_values():
    for key in ("embodiment", "control_rate", "action_space", "action_layout", "camera_roles", "intrinsics"):
        assert FLAGS[key][0] == "embodiment"
    assert JobConfig.from_flags(embodiment="g1").embodiment.name == "g1"
    bad = [
        ({"action_space": "cartesian"}, "action_space must be one of"),
        ({"control_rate": 0}, "control_rate must be positive"),
        ({"action_layout": {"arm": [3, 3]}}, "action_layout.arm must be [start, stop]"),
        ({"state_layout": {"1arm": [0, 2]}}, "slice name '1arm'"),
        ({"camera_roles": {"a": "wrist", "b": "wrist"}}, "both have the role 'wrist'"),
        ({"intrinsics": {"a": {"fx": 1}}}, "intrinsics.a needs exactly the keys"),
        ({"embodiment": " "}, "embodiment must be a non-empty name"),
    ]
    for flags, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
            JobConfig.from_flags(**flags)
    assert EmbodimentConfig().problems() == []


def test_toml_keys_reach_the_section(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text(
        'embodiment = "widowx"\naction_space = "eef"\n'
        "action_layout = {arm = [0, 6], gripper = [6, 7]}\n"
        '[camera_roles]\nimage_0 = "primary"\n'
    )
    cfg = load_config(path)
    assert cfg.embodiment.name == "widowx" and cfg.embodiment.action_layout["gripper"] == [6, 7]
    assert cfg.embodiment.camera_roles == {"image_0": "primary"}
    assert cfg.output_dict()["action_layout"] == {"arm": [0, 6], "gripper": [6, 7]}


def test_intrinsics_follow_the_stored_image():
    k = {"fx": 600.0, "fy": 600.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480}
    st = stored_intrinsics(k, ImageConfig(size=224, resize_mode="stretch"))
    assert st == pytest.approx(
        {"fx": 210.0, "fy": 280.0, "cx": 112.0, "cy": 112.0, "width": 224, "height": 224}
    )
    pad = stored_intrinsics(k, ImageConfig(size=224, resize_mode="pad"))  # 224 x 168 at row 28
    assert pad == pytest.approx(
        {"fx": 210.0, "fy": 210.0, "cx": 112.0, "cy": 84.0 + 28, "width": 224, "height": 224}
    )
    crop = stored_intrinsics(k, ImageConfig(size=224, resize_mode="center-crop"))  # 299 x 224, cols 37..
    assert crop["cx"] == pytest.approx(320 * 299 / 640 - 37) and crop["fy"] == pytest.approx(280.0)


def test_info_json_and_the_card_record_the_embodiment(bridge_out):
    info = read_json(bridge_out / "meta" / "info.json")
    e = info["embodiment"]
    assert e["name"] == "widowx" and e["name_from"] == "config"
    assert e["control_rate"] == 5.0 and info["fps"] == 10.0
    assert e["action_space"] == {"kind": "eef", "mode": "delta", "frame": "base"}
    assert e["action_dim"] == 7 and e["state_dim"] == 7
    assert e["action_layout"] == {"arm": [0, 6], "gripper": [6, 7]}
    assert e["cameras"] == {
        "image_0": "primary",
        "image_1": "secondary",
        "image_2": "image_2",
        "image_3": "image_3",
    }
    assert e["intrinsics"]["image_0"]["stored"] == pytest.approx(
        {"fx": 75.0, "fy": 75.0, "cx": 48.0, "cy": 48.0, "width": 96, "height": 96}
    )
    assert info["config"]["embodiment"] == "widowx"
    card = (bridge_out / "README.md").read_text()
    assert "## Embodiment" in card
    assert "- robot: widowx (from the config)" in card
    assert "- control rate: 5.0 Hz (samples at 10.0 Hz)" in card
    assert "arm [0:6], gripper [6:7]" in card and "image_0 = primary" in card
    assert validate_output(bridge_out).ok


def test_defaults_name_the_source_embodiment_and_the_clock(tmp_path):
    out = tmp_path / "lift"
    run_ingest(
        str(shared_data("robosuite_hdf5") / "lift.hdf5"),
        str(out),
        JobConfig.from_flags(workers=0, fps=20, no_images=True),
    )
    e = read_json(out / "meta" / "info.json")["embodiment"]
    assert e["name"] == "robomimic" and e["name_from"] == "source"
    assert e["control_rate"] == 20.0
    assert e["action_space"] == {"kind": "unknown", "mode": "unknown", "frame": None}
    assert e["cameras"] == {} and e["action_layout"] == {} and e["intrinsics"] == {}
    assert (e["action_dim"], e["state_dim"]) == (7, 32)


def test_a_slice_or_camera_that_does_not_fit_fails_the_job_by_name(tmp_path):
    lift = str(shared_data("robosuite_hdf5") / "lift.hdf5")
    cases = [
        (
            {"action_layout": {"arm": [0, 6], "hands": [6, 12]}},
            "action_layout.hands = [6, 12] does not fit the dataset's 7-D actions",
        ),
        (
            {"state_layout": {"base": [30, 33]}},
            "state_layout.base = [30, 33] does not fit the dataset's 32-D states",
        ),
        ({"camera_roles": {"agentview": "primary"}}, "camera_roles names camera 'agentview'"),
    ]
    for i, (flags, message) in enumerate(cases):
        with pytest.raises(IngestError, match=message.replace("[", r"\[")):
            run_ingest(lift, str(tmp_path / f"out{i}"), JobConfig.from_flags(workers=0, **flags))
        assert not (tmp_path / f"out{i}" / "meta" / "info.json").exists()


def test_validate_checks_the_recorded_slices(bridge_out):
    info = read_json(bridge_out / "meta" / "info.json")
    assert validate_metadata("info", info) == []
    bad = copy.deepcopy(info)
    bad["embodiment"]["state_layout"]["gripper"] = [6, 9]
    found = validate_metadata("info", bad)
    assert [p.field for p in found] == ["embodiment.state_layout.gripper"]
    old = copy.deepcopy(info)
    del old["embodiment"]  # written before the embodiment object existed
    assert validate_metadata("info", old) == []
