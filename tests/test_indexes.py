"""`trajshard index`: the wids shard index and the Energon .nv-meta folder, read by the real packages."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tests.helpers import split_keys
from trajshard.cli import main
from trajshard.io import file_digest, iter_tar_samples, read_json
from trajshard.loading.index import write_indexes
from trajshard.loading.source import LoaderError


@pytest.fixture
def indexed(two_split, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_split, out)
    result = CliRunner().invoke(main, ["index", str(out)])
    assert result.exit_code == 0, result.output
    assert "train: 140 samples, val: 84 samples (shards verified)" in result.output
    return out


def test_wids_index_matches_the_manifest_and_the_files(indexed):
    manifest = read_json(indexed / "meta" / "manifest.json")["shards"]
    for split in ("train", "val"):
        index = read_json(indexed / "meta" / f"wids-{split}.json")
        assert index["__kind__"] == "wids-shard-index-v1" and index["wids_version"] == 1
        entries = [s for s in manifest if s["split"] == split]
        assert len(index["shardlist"]) == len(entries) > 5
        for e, m in zip(index["shardlist"], sorted(entries, key=lambda s: s["name"]), strict=True):
            path = (indexed / "meta" / e["url"]).resolve()
            assert path == (indexed / m["name"]).resolve()
            assert (e["nsamples"], e["filesize"], e["sha256"]) == (m["samples"], m["bytes"], m["sha256"])
            assert file_digest(path) == (e["filesize"], e["sha256"])
            assert e["nsamples"] == sum(1 for _ in iter_tar_samples(path))


def test_wids_opens_the_index(indexed, tmp_path):
    wids = pytest.importorskip("wids")
    ds = wids.ShardListDataset(
        str(indexed / "meta" / "wids-val.json"), cache_dir=str(tmp_path / "cache"), transformations=[]
    )
    assert len(ds) == 84
    keys = [ds[i]["__key__"] for i in range(len(ds))]
    assert keys == split_keys(indexed, "val")
    assert json.loads(ds[5][".meta.json"].read())["episode"] == keys[5].rsplit("_", 1)[0]


def test_energon_reads_the_train_split_once(indexed):
    pytest.importorskip("torch")
    energon = pytest.importorskip("megatron.energon")
    meta = indexed / ".nv-meta"
    assert {p.name for p in meta.iterdir()} >= {
        ".info.json",
        "dataset.yaml",
        "split.yaml",
        "index.sqlite",
        "index.uuid",
    }
    for name in read_json(indexed / "meta" / "manifest.json")["shards"]:
        assert (indexed / f"{name['name']}.idx").is_file()
    assert "__class__: TrajshardSample" in (meta / "dataset.yaml").read_text()
    assert not [p for p in indexed.iterdir() if p.name.startswith(".energon-")]  # staging removed

    wc = energon.WorkerConfig(rank=0, world_size=1, num_workers=2)
    ds = energon.get_train_dataset(
        str(indexed),
        split_part="train",
        worker_config=wc,
        batch_size=None,
        shuffle_buffer_size=None,
        max_samples_per_sequence=None,
        repeat=False,
    )
    samples = list(energon.get_loader(ds))
    keys = [s.__key__ for s in samples]
    expected = split_keys(indexed, "train")
    assert len(keys) == len(expected) and sorted(keys) == sorted(expected)
    s = samples[0]
    assert type(s).__name__ == "TrajshardSample"
    assert tuple(s.image.shape) == (3, 224, 224) and tuple(s.image_1.shape) == (3, 224, 224)
    assert s.state.shape == (7,) and s.token_ids.shape == (7,)
    assert s.episode == s.__key__.rsplit("_", 1)[0] and isinstance(s.instruction, str) and s.instruction
    val = energon.get_val_dataset(str(indexed), split_part="val", worker_config=wc, batch_size=1)
    assert sum(1 for _ in energon.get_loader(val)) == 84


def test_index_refuses_a_shard_that_differs_from_the_manifest(two_split, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_split, out)
    shard = out / read_json(out / "meta" / "manifest.json")["shards"][3]["name"]
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(LoaderError, match="the manifest says"):
        write_indexes(out, energon=False)
    assert not (out / "meta" / "wids-train.json").exists()
    result = CliRunner().invoke(main, ["index", str(out), "--no-energon"])
    assert result.exit_code == 2 and "sha256" in result.output
