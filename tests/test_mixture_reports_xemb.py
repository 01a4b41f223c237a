"""validate and stats on a mixed output (`trajshard mix`): per dataset, its samples, source episodes,
share against its weight and round trips, on a small mix of two real robots of ../shared/data
(Bridge: WidowX, 7-D actions and states, four cameras; robosuite Lift: 7-D actions, 32-D states,
no camera)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import shared_data
from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.io import iter_tar_samples, read_json, tar_members, write_json_atomic
from trajshard.pipelines.ingest import run_ingest
from trajshard.pipelines.mix import run_mix
from trajshard.reports.validation import validate_output
from trajshard.schemas.sample import load_npy, npy_bytes

SAMPLES = 400
WEIGHTS = {"bridge": 0.6, "lift": 0.4}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two_robots")
    run_ingest(str(shared_data("bridge_rlds")), str(root / "bridge"), JobConfig.from_flags(workers=0, fps=5))
    run_ingest(
        str(shared_data("robosuite_hdf5/lift.hdf5")),
        str(root / "lift"),
        JobConfig.from_flags(workers=0, fps=20, no_images=True),
    )
    lines = ["seed = 3"]
    for name, w in WEIGHTS.items():
        lines += ["[[datasets]]", f'path = "{name}"', f"weight = {w}"]
    lines += ["[target]", 'cameras = ["image_0"]']
    (root / "mix.toml").write_text("\n".join(lines) + "\n")
    run_mix(root / "mix.toml", root / "out", samples=SAMPLES, shard_size="1MB", block=100)
    return root / "out"


def _metas(out: Path) -> list[dict]:
    return [
        json.loads(m["meta.json"])
        for shard in sorted((out / "shards").glob("*.tar"))
        for _, m in iter_tar_samples(shard)
    ]


def test_validate_and_stats_give_each_datasets_counts_share_and_round_trips(mixed):
    report = validate_output(mixed)
    assert report.ok, report.problems[:3]
    rows = {r["dataset"]: r for r in report.mixture}
    assert list(rows) == list(WEIGHTS)
    metas = _metas(mixed)
    assert len(metas) == SAMPLES and report.shards > 1
    drawn = {d["name"]: d["drawn"] for d in read_json(mixed / "meta" / "mixture.json")["datasets"]}
    for name, r in rows.items():
        mine = [m for m in metas if m["dataset_name"] == name]
        assert r["samples"] == len(mine) == drawn[name] and r["checked"] == len(mine)
        assert r["episodes"] == len({m["source"]["episode"] for m in mine}) > 1
        assert r["share"] == pytest.approx(len(mine) / SAMPLES) and r["weight"] == pytest.approx(
            WEIGHTS[name]
        )
        assert abs(r["share"] - r["weight"]) < 0.1
        # uniform bins: the worst error is half a bin (values clipped to the bounds land exactly there)
        assert 0.5 < r["roundtrip_output"] <= 1 + 1e-9 and 0.5 < r["roundtrip_own"] <= 1 + 1e-9
        assert r["roundtrip_output_own_bins"] > 0 and r["ok"]
    assert rows["bridge"]["episodes"] == 25 and rows["lift"]["episodes"] == 3

    run = CliRunner().invoke(main, ["validate", str(mixed)])
    assert run.exit_code == 0, run.output
    table = run.output[run.output.index("datasets of the mixture") :]
    for name, r in rows.items():
        assert f"{name:<16}{r['samples']:>9}{r['episodes']:>10}" in table
    as_json = json.loads(CliRunner().invoke(main, ["validate", "--json", str(mixed)]).output)
    assert as_json["mixture"] == report.mixture
    stats = CliRunner().invoke(main, ["stats", str(mixed)])
    assert stats.exit_code == 0 and table.splitlines()[2] in stats.output
    stats_json = json.loads(CliRunner().invoke(main, ["stats", "--json", str(mixed)]).output)
    assert stats_json["mixture"] == report.mixture


def _shift_tokens(out: Path, dataset: str, by: int) -> int:
    """Add ``by`` to the stored tokens of every sample of ``dataset``, in place (the same member sizes),
    and record the shards' new sha256 in the manifest: only the tokens are wrong."""
    changed = 0
    manifest = read_json(out / "meta" / "manifest.json")
    for shard in manifest["shards"]:
        path = out / shard["name"]
        with open(path, "r+b") as f:
            members = list(tar_members(f, path))
            metas = {}
            for info, key, field in members:
                if field == "meta.json":
                    f.seek(info.offset_data)
                    metas[key] = json.loads(f.read(info.size))
            for info, key, field in members:
                if field == "tokens.npy" and metas[key]["dataset_name"] == dataset:
                    f.seek(info.offset_data)
                    tokens = load_npy(f.read(info.size))
                    new = npy_bytes((tokens + by).astype(tokens.dtype))
                    assert len(new) == info.size
                    f.seek(info.offset_data)
                    f.write(new)
                    changed += 1
        shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json_atomic(out / "meta" / "manifest.json", manifest)
    return changed


def test_a_dataset_whose_tokens_miss_their_bound_fails_and_is_named(mixed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(mixed, out)
    assert _shift_tokens(out, "lift", 2) > 0
    report = validate_output(out)
    rows = {r["dataset"]: r for r in report.mixture}
    assert not rows["lift"]["ok"] and rows["bridge"]["ok"]
    assert rows["lift"]["roundtrip_output"] > 3 and rows["lift"]["roundtrip_own"] <= 1 + 1e-9
    named = [p for p in report.problems if p.field.startswith("dataset ")]
    assert [p.field for p in named] == ["dataset lift"] and "the output's tokenizer" in named[0].message
    run = CliRunner().invoke(main, ["validate", str(out)])
    assert run.exit_code == 1
    assert [
        line.split()[-1] for line in run.output.splitlines() if line.startswith(("bridge ", "lift "))
    ] == [
        "yes",
        "NO",
    ]


def test_counts_that_disagree_with_mixture_json_are_problems(mixed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(mixed, out)
    doc = read_json(out / "meta" / "mixture.json")
    doc["datasets"][0]["drawn"] += 1
    write_json_atomic(out / "meta" / "mixture.json", doc)
    report = validate_output(out)
    held = report.mixture[0]["samples"]
    assert [(p.field, p.message) for p in report.problems] == [
        ("datasets.bridge.drawn", f"says {held + 1}, shards hold {held}")
    ]
    assert np.isclose(sum(r["share"] for r in report.mixture), 1.0)
