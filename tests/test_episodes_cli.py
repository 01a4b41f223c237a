"""`trajshard episodes`: the ids inspect and the id filters take, from a dataset or a source; and
inspect's errors pointing to it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from trajshard.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_a_dataset_lists_ids_with_samples_split_and_instruction(ingested, synthetic_raw):
    res = _run("episodes", str(ingested), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    rows = {r["episode"]: r for r in doc["episodes"]}
    assert doc["kind"] == "dataset" and sorted(rows) == sorted(p.name for p in synthetic_raw.iterdir())
    first = json.loads((synthetic_raw / "ep_003" / "episode.json").read_text())
    said = first.get("instruction") or first["instructions"][0]["text"]
    assert rows["ep_003"]["instruction"] == said
    assert all(r["split"] == "train" and r["samples"] > 0 for r in rows.values())
    text = _run("episodes", str(ingested)).output
    assert text.splitlines()[0].endswith("8 episodes (train 8)") and "ep_003" in text


def test_a_split_selects_its_episodes(ingested):
    doc = json.loads(_run("episodes", str(ingested), "--split", "val", "--json").output)
    assert doc["episodes"] == []


def test_a_source_lists_the_ids_its_reader_plans_and_those_it_rejects(raw_copy):
    (raw_copy / "ep_000").rename(raw_copy / "bad id")
    res = _run("episodes", str(raw_copy), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == "source" and doc["format"] == "raw"
    assert doc["episodes"] == [f"ep_{i:03d}" for i in range(1, 8)]
    assert [r["episode"] for r in doc["rejected"]] == ["bad id"]


def test_inspect_without_or_with_an_unknown_episode_names_the_episodes_command(ingested):
    missing = _run("inspect", str(ingested))
    assert missing.exit_code == 2 and "trajshard episodes OUT" in missing.output
    unknown = _run("inspect", str(ingested), "--episode", "nope")
    assert unknown.exit_code == 1 and f"trajshard episodes {ingested}" in unknown.output
