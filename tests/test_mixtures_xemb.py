"""Mixtures of different robots: the four real datasets of ../shared/data (Bridge: WidowX, 7-D, four
64x64 cameras, 5 Hz; GR00T: GR1 arms, 44-D, one 256x256 camera, 20 fps; G1: humanoid, 26-D, one
640x480 AV1 camera, 30 fps; robosuite Lift: 7-D actions, 32-D states, no camera) ingested separately,
once per module, and read as one weighted mixture with a [target] layout."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from trajshard.config import JobConfig
from trajshard.io import iter_tar_samples, read_json
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import token_limit
from trajshard.schemas.sample import load_npy
from trajshard.tokenizers import from_json

torch = pytest.importorskip("torch")
from trajshard.loader import LoaderError, make_loader, open_dataset  # noqa: E402

NAMES = ("bridge", "gr00t", "g1", "lift")
WEIGHTS = (0.3, 0.3, 0.2, 0.2)
EPOCH = 4000
BATCH = 32
ROLES = ("primary", "secondary")
SIZE = 96
INGEST = {
    "bridge": (
        "bridge_rlds",
        dict(
            fps=5,
            image_size=64,
            embodiment="widowx",
            action_space="eef",
            action_mode="delta",
            action_layout={"arm": [0, 6], "gripper": [6, 7]},
            camera_roles={"image_0": "primary", "image_1": "secondary"},
        ),
    ),
    "gr00t": (
        "gr00t_pnp_lerobot_v20",
        dict(fps=20, image_size=128, action_space="joint", camera_roles={"ego_view": "primary"}),
    ),
    "g1": ("g1_lerobot_v21", dict(fps=30, image_size=SIZE)),  # its role comes from the mixture file
    "lift": ("robosuite_hdf5/lift.hdf5", dict(fps=20, no_images=True)),  # no camera: said so
}
WIDTHS = {"bridge": (7, 7), "gr00t": (44, 44), "g1": (26, 26), "lift": (7, 32)}  # action, state
ROLE_MASK = {"bridge": [True, True], "gr00t": [True, False], "g1": [True, False], "lift": [False, False]}


@pytest.fixture(scope="module")
def robots(tmp_path_factory) -> Path:
    """The four datasets, each ingested serially (no Ray) into <root>/<name>, and a mixture file."""
    root = tmp_path_factory.mktemp("robots")
    for name, (src, flags) in INGEST.items():
        run_ingest(str(shared_data(src)), str(root / name), JobConfig.from_flags(workers=0, **flags))
    write_mix(root)
    return root


def write_mix(root: Path, file: str = "mix.toml", target: str = "", **datasets_extra) -> Path:
    lines = [f"samples_per_epoch = {EPOCH}", "seed = 7"]
    for name, w in zip(NAMES, WEIGHTS, strict=True):
        lines += ["[[datasets]]", f'path = "{name}"', f"weight = {w}"]
        if name == "g1":
            lines.append('camera_roles = {cam_high = "primary"}')
        lines += datasets_extra.get(name, [])
    lines += ["[target]", f"cameras = {json.dumps(list(ROLES))}", f"image_size = {SIZE}", target]
    path = root / file
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stored(robots) -> dict[tuple[int, str], np.ndarray]:
    """(dataset index, key) -> the action.npy stored in that dataset's shards."""
    out = {}
    for d, name in enumerate(NAMES):
        for shard in sorted((robots / name / "shards").glob("*.tar")):
            for key, members in iter_tar_samples(shard):
                out[(d, key)] = load_npy(members["action.npy"])
    return out


@pytest.fixture(scope="module")
def epoch(robots):
    """One epoch of the mixture through a 2-worker DataLoader: the batches, as numpy, and the order."""
    ds = open_dataset(write_mix(robots), batch_size=BATCH, shuffle_buffer=64)
    batches = []
    for b in make_loader(ds, num_workers=2):
        batches.append(
            {
                "key": b["key"],
                "dataset": b["dataset"].numpy(),
                "dataset_name": b["dataset_name"],
                "embodiment": b["embodiment"],
                "images": {r: b["images"][r].numpy() for r in b["images"]},
                "image_mask": b["image_mask"].numpy(),
                **{k: b[k].numpy() for k in ("action", "action_mask", "state", "state_mask", "tokens")},
                **{k: b[k].numpy() for k in ("action_dim", "state_dim", "fps")},
                "decoded": ds.decode_actions(b),
            }
        )
    order = [(int(d), k) for b in batches for d, k in zip(b["dataset"], b["key"], strict=True)]
    return ds, batches, order


def test_an_epoch_yields_fixed_shapes_with_masks(epoch):
    ds, batches, order = epoch
    assert len(order) == EPOCH and ds.standard.roles == ROLES
    assert (ds.standard.action_width, ds.standard.state_width, ds.standard.image_size) == (44, 44, SIZE)
    for b in batches:
        n = len(b["key"])
        assert n <= BATCH
        assert set(b["images"]) == set(ROLES)
        for role in ROLES:
            assert b["images"][role].shape == (n, 3, SIZE, SIZE) and b["images"][role].dtype == np.uint8
        assert b["image_mask"].shape == (n, 2)
        for k in ("action", "state"):
            assert b[k].shape == (n, 44) and b[k].dtype == np.float32
            assert b[f"{k}_mask"].shape == (n, 44) and b[f"{k}_mask"].dtype == bool
        assert b["tokens"].shape == (n, 44) and b["tokens"].dtype == np.int32
        for i in range(n):
            name = NAMES[b["dataset"][i]]
            aw, sw = WIDTHS[name]
            assert b["dataset_name"][i] == name
            assert (b["action_dim"][i], b["state_dim"][i]) == (aw, sw)
            assert b["action_mask"][i].tolist() == [True] * aw + [False] * (44 - aw)
            assert b["state_mask"][i].tolist() == [True] * sw + [False] * (44 - sw)
            assert (b["action"][i, aw:] == 0).all() and (b["state"][i, sw:] == 0).all()
            assert (b["tokens"][i, aw:] == -1).all() and (b["tokens"][i, :aw] >= 1).all()
            assert b["image_mask"][i].tolist() == ROLE_MASK[name]
            for j, role in enumerate(ROLES):
                if not ROLE_MASK[name][j]:
                    assert not b["images"][role][i].any()  # a missing role is a zero image
    assert {b["embodiment"][i] for b in batches for i in range(len(b["key"])) if b["dataset"][i] == 0} == {
        "widowx"
    }
    embodiments = {NAMES[d]: e for b in batches for d, e in zip(b["dataset"], b["embodiment"], strict=True)}
    assert embodiments == {
        "bridge": "widowx",
        "gr00t": "GR1ArmsOnly",
        "g1": "Unitree_G1_Inspire",
        "lift": "robomimic",
    }
    fps = {NAMES[d]: f for b in batches for d, f in zip(b["dataset"], b["fps"], strict=True)}
    assert fps == {"bridge": 5.0, "gr00t": 20.0, "g1": 30.0, "lift": 20.0}


def test_every_action_decodes_with_its_own_dataset_within_half_a_bin(epoch, stored, robots):
    _, batches, _ = epoch
    toks = [from_json(read_json(robots / n / "meta" / "tokenizer.json")) for n in NAMES]
    checked = 0
    for b in batches:
        for i, (d, key) in enumerate(zip(b["dataset"], b["key"], strict=True)):
            w = WIDTHS[NAMES[d]][0]
            action = b["action"][i, :w]
            assert np.array_equal(action, stored[(int(d), key)])  # the sample's own dataset's action
            own = toks[d]
            decoded = own.decode(b["tokens"][i, :w])
            assert np.array_equal(decoded, b["decoded"][i, :w])
            assert np.isnan(b["decoded"][i, w:]).all()
            low, high = own.bounds()
            err = np.abs(decoded - np.clip(action.astype(np.float64), low, high))
            assert (err <= token_limit(own.tolerance(), action, decoded)).all()  # half of its own bin
            checked += 1
    assert checked == EPOCH


def test_each_dataset_gets_its_weight_within_two_points(epoch):
    _, _, order = epoch
    counts = np.bincount([d for d, _ in order], minlength=4)
    shares = counts / counts.sum()
    assert counts.sum() == EPOCH
    assert np.abs(shares - np.array(WEIGHTS)).max() < 0.02, shares


def test_resume_at_three_points_gives_exactly_the_rest(epoch, robots):
    _, batches, order = epoch
    mix = robots / "mix.toml"
    for stop in (1, 43, len(batches) - 3):
        loader = make_loader(open_dataset(mix, batch_size=BATCH, shuffle_buffer=64), num_workers=2)
        head = []
        for b in itertools.islice(loader, stop):
            head += [(int(d), k) for d, k in zip(b["dataset"], b["key"], strict=True)]
        state = json.loads(json.dumps(loader.state_dict()))
        resumed = make_loader(open_dataset(mix, batch_size=BATCH, shuffle_buffer=64), num_workers=2)
        resumed.load_state_dict(state)
        rest, actions = [], []
        for b in resumed:
            rest += [(int(d), k) for d, k in zip(b["dataset"], b["key"], strict=True)]
            actions.append(b["action"].numpy())
        assert head + rest == order, stop
        assert np.array_equal(np.concatenate(actions), np.concatenate([b["action"] for b in batches[stop:]]))


def test_ranks_split_the_mixture_and_repeat(robots):
    mix = robots / "mix.toml"

    def run(rank):
        ds = open_dataset(
            mix, batch_size=BATCH, shuffle_buffer=64, rank=rank, world_size=2, decode_images=False
        )
        return ds, [
            (int(d), k)
            for b in make_loader(ds, num_workers=2)
            for d, k in zip(b["dataset"], b["key"], strict=True)
        ]

    ds0, r0 = run(0)
    _, r1 = run(1)
    assert len(r0) == ds0.num_samples(2) and len(r0) + len(r1) == EPOCH
    assert run(0)[1] == r0 and r0 != r1


def test_pooled_tokens_decode_within_the_pooled_bin(robots, stored):
    ds = open_dataset(
        write_mix(robots, "pooled.toml", 'tokenizer = "pooled"'), batch_size=BATCH, shuffle_buffer=64
    )
    pooled = ds.standard.pooled
    assert pooled is not None and pooled.dims == 44
    for b in itertools.islice(make_loader(ds, num_workers=0), 8):
        decoded = ds.decode_actions(b)
        for i, d in enumerate(b["dataset"].tolist()):
            w = WIDTHS[NAMES[d]][0]
            action = b["action"][i, :w].numpy()
            assert np.array_equal(action, stored[(d, b["key"][i])])
            tok = ds.standard.tokenizer_of(d)
            assert (b["tokens"][i, :w].numpy() == tok.encode(action)).all()
            low, high = tok.bounds()
            err = np.abs(decoded[i, :w] - np.clip(action.astype(np.float64), low, high))
            assert (err <= token_limit(tok.tolerance(), action, decoded[i, :w])).all()
    # dims 0..6: all four datasets pooled, each bound between theirs; dims 26..43: GR00T's alone, exactly
    own = [from_json(read_json(robots / n / "meta" / "tokenizer.json")).bounds() for n in NAMES]
    low, high = pooled.bounds()
    assert (low[:7] >= np.min([o[0][:7] for o in own], axis=0) - 1e-9).all()
    assert (high[:7] <= np.max([o[1][:7] for o in own], axis=0) + 1e-9).all()
    assert np.allclose(low[26:], own[1][0][26:], rtol=0, atol=1e-12)
    assert np.allclose(high[26:], own[1][1][26:], rtol=0, atol=1e-12)


def test_ragged_keeps_each_dataset_width(robots):
    ds = open_dataset(
        write_mix(robots, "ragged.toml", 'actions = "ragged"'), batch_size=16, shuffle_buffer=64
    )
    b = next(iter(make_loader(ds, num_workers=0)))
    assert isinstance(b["action"], list) and "action_mask" not in b
    for i, d in enumerate(b["dataset"].tolist()):
        aw, sw = WIDTHS[NAMES[d]]
        assert (
            b["action"][i].shape == (aw,) and b["state"][i].shape == (sw,) and b["tokens"][i].shape == (aw,)
        )
        assert int(b["action_dim"][i]) == aw
    decoded = ds.decode_actions(b)
    assert [len(x) for x in decoded] == [int(w) for w in b["action_dim"]]
    assert b["images"]["primary"].shape == (16, 3, SIZE, SIZE)


def test_unbatched_samples_carry_the_layout(robots):
    ds = open_dataset(robots / "mix.toml", shuffle_buffer=8, decode_images=False)
    s = next(iter(ds))
    assert set(s["images"]) == set(ROLES) and all(isinstance(v, bytes) for v in s["images"].values())
    assert s["action"].shape == (44,) and s["image_mask"].dtype == torch.bool
    assert s["meta"]["dataset_name"] in NAMES and isinstance(s["dataset"], int)


def test_layouts_that_cannot_be_made_are_refused(robots):
    def refused(text: str, match: str, **extra):
        path = robots / "bad.toml"
        write_mix(robots, "bad.toml", **extra)
        path.write_text(
            path.read_text().replace("image_size = 96\n", "")
            if text == "no-size"
            else path.read_text() + text
        )
        with pytest.raises(LoaderError, match=match):
            open_dataset(path)

    refused("no-size", r"images differ in size \(bridge: 64x64, gr00t: 128x128, g1: 96x96\)")
    refused("action_width = 30\n", "dataset 'gr00t' has 44-D actions, wider than target.action_width = 30")
    refused("holes = 1\n", r"unknown keys \['holes'\]")
    refused('actions = "jagged"\n', "target.actions must be one of")
    refused("", "names camera 'wrist'", lift=['camera_roles = {wrist = "wrist"}'])
    refused(
        "",
        "cameras 'image_0' and 'image_1' both have the role 'primary'",
        bridge=['camera_roles = {image_1 = "primary"}'],
    )
    path = write_mix(robots, "bad.toml")
    path.write_text(path.read_text().replace('"secondary"]', '"secondary", "left_wrist"]'))
    with pytest.raises(
        LoaderError, match="target camera role 'left_wrist': no dataset of the mixture has it"
    ):
        open_dataset(path)
    # without [target] the datasets must match, and the error says how to mix them
    plain = robots / "plain.toml"
    plain.write_text('[[datasets]]\npath = "bridge"\n[[datasets]]\npath = "gr00t"\n')
    with pytest.raises(LoaderError, match=r"mixture datasets differ.*\[target\]"):
        open_dataset(plain)


def test_own_tokens_need_one_token_space(robots, tmp_path):
    lift128 = tmp_path / "lift128"
    run_ingest(
        str(shared_data("robosuite_hdf5") / "lift.hdf5"),
        str(lift128),
        JobConfig.from_flags(workers=0, bins=128, no_images=True),
    )
    mix = tmp_path / "mix.toml"
    mix.write_text(
        f'[[datasets]]\npath = "{robots / "bridge"}"\n[[datasets]]\npath = "{lift128}"\n[target]\nimage_size = 64\n'
    )
    with pytest.raises(LoaderError, match="tokenizer = 'own' needs one token space"):
        open_dataset(mix)
    mix.write_text(mix.read_text() + 'tokenizer = "pooled"\n')
    with pytest.raises(LoaderError, match="same bins and mode"):
        open_dataset(mix)


# ---- trajshard mix ------------------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def mixed(robots, tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from trajshard.cli import main

    out = tmp_path_factory.mktemp("mixed") / "out"
    args = [
        "mix",
        str(robots / "mix.toml"),
        str(out),
        "--samples",
        "1500",
        "--shard-size",
        "4MB",
        "--block",
        "400",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote 1500 samples" in result.output
    return out


def test_mix_writes_a_dataset_that_validate_accepts_deterministically(mixed, robots, tmp_path):
    from trajshard.pipelines.mix import run_mix
    from trajshard.reports.validation import validate_output

    report = validate_output(mixed)
    assert report.ok, report.problems[:5]
    assert report.samples == 1500 and report.shards > 1 and report.episodes == 4  # blocks of 400
    again = tmp_path / "again"
    run_mix(robots / "mix.toml", again, samples=1500, shard_size="4MB", block=400)
    a, b = tree_digest(mixed), tree_digest(again)
    assert a == b  # the same mixture, datasets and options: the same bytes
    info = read_json(mixed / "meta" / "info.json")
    assert info["cameras"] == list(ROLES) and info["mixture"]["datasets"] == list(NAMES)
    assert info["features"]["action.npy"]["shape"] == [44] and info["features"]["image_mask.npy"][
        "shape"
    ] == [2]
    doc = read_json(mixed / "meta" / "mixture.json")
    assert [d["name"] for d in doc["datasets"]] == list(NAMES)
    assert sum(d["drawn"] for d in doc["datasets"]) == 1500
    assert doc["datasets"][0]["embodiment"]["name"] == "widowx"
    assert "| bridge | widowx | 0.3 |" in (mixed / "README.md").read_text()
    with pytest.raises(ValueError, match="exists and is not empty"):
        run_mix(robots / "mix.toml", mixed, samples=10)


def test_the_loader_reads_a_mix_as_one_dataset_with_provenance(mixed, stored, robots):
    ds = open_dataset(mixed, batch_size=50, shuffle_buffer=0, shuffle_shards=False)
    tok = from_json(read_json(mixed / "meta" / "tokenizer.json"))
    rows = []
    for b in make_loader(ds, num_workers=0):
        assert b["image_mask"].shape == (len(b["key"]), 2) and b["action"].shape == (len(b["key"]), 44)
        assert b["images"]["secondary"].shape[1:] == (3, SIZE, SIZE)
        for i, meta in enumerate(b["meta"]):
            d, w = NAMES.index(meta["dataset_name"]), int(b["action_dim"][i])
            assert meta["source"]["dataset"] == NAMES[d] and w == WIDTHS[NAMES[d]][0]
            action = b["action"][i].numpy()
            assert np.array_equal(action[:w], stored[(d, meta["source"]["key"])])
            assert b["action_mask"][i].sum() == w and b["image_mask"][i].tolist() == ROLE_MASK[NAMES[d]]
            decoded = tok.decode(b["tokens"][i].numpy())
            low, high = tok.bounds()
            err = np.abs(decoded - np.clip(action.astype(np.float64), low, high))
            assert (err[:w] <= token_limit(tok.tolerance(), action, decoded)[:w]).all()
            rows.append((d, meta["source"]["key"]))
    assert len(rows) == 1500
    # the mix is the loader's own order of the mixture: one role (no workers), epoch 0
    loader_ds = open_dataset(robots / "mix.toml", batch_size=50, shuffle_buffer=1000, decode_images=False)
    order = [
        (int(d), k)
        for b in make_loader(loader_ds, num_workers=0)
        for d, k in zip(b["dataset"], b["key"], strict=True)
    ]
    assert rows == order[:1500]
