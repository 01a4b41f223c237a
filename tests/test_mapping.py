"""The source mapping (sources/mapping.py): parts with fields, slices and names, the instruction's
kinds, a mapping in its own file, and GR00T's modality.json read as one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import shared_data
from trajshard.config import load_config
from trajshard.sources import open_source
from trajshard.sources.mapping import MappingError, Part, concat_parts, parse_mapping

GR00T = "gr00t_pnp_lerobot_v20"


def test_parts_parse_from_strings_and_tables():
    m = parse_mapping(
        {
            "state": [
                "/arm/joint_states:position[0:6]",
                "gripper",
                {"key": "obs/eef", "slice": [0, 3], "names": ["x", "y", "z"]},
            ],
            "action": ["actions[-1:]"],
            "instruction": {"record": "task_info", "field": "task_description"},
        }
    )
    assert m.state[0] == Part("/arm/joint_states", "position", 0, 6)
    assert m.state[1] == Part("gripper")
    assert m.state[2] == Part("obs/eef", "", 0, 3, ("x", "y", "z"))
    assert m.action[0] == Part("actions", "", -1, None)
    assert (m.instruction.kind, m.instruction.value, m.instruction.field) == (
        "record",
        "task_info",
        "task_description",
    )
    assert parse_mapping({"instruction": "pick the cube"}).instruction.kind == "constant"


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"state": "state"}, "mapping.state must be a non-empty list"),
        ({"state": ["a[x:y]"]}, "mapping.state[0]"),
        ({"state": [{"slice": [0, 1]}]}, "needs key"),
        ({"cameras": {"primary": 3}}, "mapping.cameras"),
        ({"instruction": {"column": "a", "file": "b"}}, "exactly one of"),
        ({"instruction": {"record": "task_info"}}, "needs field"),
        ({"nope": 1}, "mapping.nope is not one of"),
    ],
)
def test_bad_mappings_name_the_key(raw, words):
    with pytest.raises(MappingError, match=words.replace("[", r"\[")):
        parse_mapping(raw)


def test_concat_slices_names_and_checks_rows():
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = np.arange(4, dtype=np.float32)
    data = {"a": (a, ("a0", "a1", "a2")), "b": (b, ())}
    values, names = concat_parts((Part("a", "", 1, None), Part("b")), lambda p: data[p.key], "f")
    assert values.tolist() == np.c_[a[:, 1:], b].tolist()
    assert names == ("a1", "a2", "b")
    _, names = concat_parts((Part("a", "", None, None, ("x", "y", "z")),), lambda p: data[p.key], "f")
    assert names == ("x", "y", "z")
    data["c"] = (np.zeros((5, 2)), ())
    with pytest.raises(MappingError, match="c has 5 rows, a has 4"):
        concat_parts((Part("a"), Part("c")), lambda p: data[p.key], "f")
    with pytest.raises(MappingError, match="selects no column"):
        concat_parts((Part("a", "", 3, None),), lambda p: data[p.key], "f")


def test_a_mapping_in_its_own_file(tmp_path):
    (tmp_path / "m.toml").write_text('[mapping]\nstate = ["state"]\naction = ["actions"]\n')
    (tmp_path / "m.json").write_text(json.dumps({"state": ["s"], "instruction": "go"}))
    assert load_config(None, mapping=str(tmp_path / "m.toml")).source.mapping == {
        "state": ["state"],
        "action": ["actions"],
    }
    assert load_config(None, mapping=str(tmp_path / "m.json")).source.mapping["instruction"] == "go"
    (tmp_path / "bad.toml").write_text('state = "s"\n')
    with pytest.raises(MappingError, match="bad.toml: mapping.state"):
        load_config(None, mapping=str(tmp_path / "bad.toml"))


def test_gr00t_modality_json_is_read_as_a_mapping_with_the_same_arrays():
    root = shared_data(GR00T)
    source = open_source(root, "lerobot")
    assert [(p.key, p.start, p.stop) for p in source.state_parts][:2] == [
        ("observation.state", 0, 7),
        ("observation.state", 7, 13),
    ]
    explicit = open_source(root, "lerobot", mapping={"state": ["observation.state"], "action": ["action"]})
    eid = source.plan()[0][0]
    a, b = source.load(eid), explicit.load(eid)
    for name in ("proprio", "action"):
        assert np.array_equal(a.streams[name].values, b.streams[name].values)
        assert a.streams[name].names == b.streams[name].names
    assert list(a.cameras) == ["ego_view"]


def test_slices_past_the_columns_and_malformed_ones_are_refused():
    data = {"a": (np.zeros((4, 7), np.float32), ())}
    with pytest.raises(MappingError, match=r"a\[0:8\] reaches past the 7 columns of a"):
        concat_parts((Part("a", "", 0, 8),), lambda p: data[p.key], "f")
    for raw in ({"state": ["k[-:3]"]}, {"state": [{"key": "k", "slice": [True, 3]}]}):
        with pytest.raises(MappingError, match=r"mapping.state\[0\]"):
            parse_mapping(raw)


def test_default_camera_names_never_lose_a_camera_to_a_clash():
    from trajshard.sources.arrays import camera_names

    assert camera_names(["wrist", "wrist_image", "agentview_image"]) == {
        "wrist": "wrist",
        "wrist_image": "wrist_image",
        "agentview": "agentview_image",
    }
    assert camera_names(["a/img", "b/img"]) == {"a_img": "a/img", "b_img": "b/img"}
