"""The hostile corpus mixed with good episodes: every good one written once, every bad one quarantined
with its own reason (the same one `validate SOURCE` gives before the job), nothing written outside OUT.
The job runs serially (no Ray)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import CORPUS, HOSTILE_NAMES
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.reports.validation_source import validate_source
from trajshard.schemas.episode import EpisodeError
from trajshard.sources.raw import RawSource


@pytest.fixture(scope="module")
def corpus(synthetic_raw, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root = base / "src"
    shutil.copytree(synthetic_raw, root)
    for name, (mutate, _) in CORPUS.items():
        shutil.copytree(synthetic_raw / "ep_000", root / name)
        mutate(root / name)
    for name in HOSTILE_NAMES:
        shutil.copytree(synthetic_raw / "ep_001", root / name)
    outside = base / "elsewhere"
    shutil.copytree(synthetic_raw / "ep_002", outside)
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    return root


def expected_bad():
    return set(CORPUS) | set(HOSTILE_NAMES) | {"linked_dir"}


@pytest.fixture(scope="module")
def job(corpus, tmp_path_factory):
    """The corpus ingested once: (report, OUT, the directory tree around SOURCE before the job)."""
    before = set(corpus.parent.rglob("*"))
    out = tmp_path_factory.mktemp("hostile_out") / "out"
    cfg = JobConfig.from_flags(workers=0, task_steps=60, image_size=64)
    return run_ingest(str(corpus), str(out), cfg, progress=False), out, before


def quarantine_reasons(out) -> dict[str, str]:
    lines = [json.loads(x) for x in (out / "meta" / "quarantine.jsonl").read_text().splitlines()]
    return {q["episode"]: f"{q['file']}: {q['reason']}" for q in lines}


def source_problems(corpus) -> dict[str, list[str]]:
    by_ep = {}
    for p in validate_source(str(corpus)).problems:
        by_ep.setdefault(p.where, []).append(f"{p.field}: {p.message}")
    return by_ep


def test_validate_source_names_each_bad_episode(corpus):
    by_ep = source_problems(corpus)
    # seen before any job (a frame-level decode failure and the dataset-shape check need the job)
    assert set(by_ep) >= expected_bad() - {"frames_do_not_decode", "proprio_wrong_width"}
    assert not set(by_ep) & {f"ep_{i:03d}" for i in range(8)}
    for name, (_, words) in CORPUS.items():
        if name in by_ep:
            text = " | ".join(by_ep[name])
            assert all(w in text for w in words), (name, text)


def test_ingest_quarantines_each_with_its_reason(corpus, job):
    report, out, before = job
    reasons = quarantine_reasons(out)
    assert set(reasons) == expected_bad()
    for name, (_, words) in CORPUS.items():
        assert all(w in reasons[name] for w in words), (name, reasons[name])
    for name, words in HOSTILE_NAMES.items():
        assert words in reasons[name]
    assert "outside the source" in reasons["linked_dir"]
    written = pq.read_table(out / "meta" / "episodes.parquet").column("episode").to_pylist()
    assert written == [f"ep_{i:03d}" for i in range(8)]  # each good episode exactly once
    assert report.episodes_input == 8 + len(expected_bad())
    assert validate_output(out).ok
    # nothing new outside OUT, no temporary file left inside it
    assert set(corpus.parent.rglob("*")) == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


def test_the_job_quarantines_with_the_reason_validate_source_gives(corpus, job):
    """What `validate SOURCE` says of a bad episode before the job is what the job's quarantine
    record says of it, word for word (file and reason), for every episode validate can judge."""
    _, out, _ = job
    reasons, by_ep = quarantine_reasons(out), source_problems(corpus)
    assert len(by_ep) >= len(expected_bad()) - 2  # all but the two only the job sees (above)
    for name, problems in by_ep.items():
        assert reasons[name] in problems, (name, reasons[name], problems)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=2048),
    target=st.sampled_from(["episode.json", "proprio.parquet", "action.parquet", "front.mp4", "wrist.webm"]),
)
def test_fuzz_raw_reader_never_crashes(synthetic_raw, tmp_path_factory, data, target):
    """Random bytes in any file: the reader raises EpisodeError (a reason) or reads, nothing else."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(synthetic_raw / "ep_003", root / "ep")
    (root / "ep" / target).write_bytes(data)
    src = RawSource(root)
    try:
        src.load("ep")
    except EpisodeError as exc:
        assert exc.where and exc.message
    assert src.check("ep") is not None


@pytest.fixture(scope="module")
def lerobot_v3(tmp_path_factory):
    from tests.lerobot_v3 import write_v3

    root = tmp_path_factory.mktemp("lerobot") / "ds"
    write_v3(root, lengths=(12, 9))
    return root


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=2048),
    target=st.sampled_from(
        [
            "meta/info.json",
            "meta/tasks.parquet",
            "meta/episodes/chunk-000/file-000.parquet",
            "data/chunk-000/file-000.parquet",
            "videos/observation.images.top/chunk-000/file-000.mp4",
        ]
    ),
)
def test_fuzz_lerobot_reader_never_crashes(lerobot_v3, tmp_path_factory, data, target):
    """Random bytes in any file: opening the source fails with a clear error, or every episode either
    loads or raises EpisodeError; never another exception."""
    from trajshard.sources.lerobot import LeRobotSource

    root = tmp_path_factory.mktemp("lfuzz") / "ds"
    shutil.copytree(lerobot_v3, root)
    (root / target).write_bytes(data)
    try:
        src = LeRobotSource(root)
    except (ValueError, OSError, KeyError, TypeError) as exc:  # the whole source is unreadable: said at once
        assert str(exc)
        return
    for eid in src.plan()[0]:
        try:
            src.load(eid)
        except EpisodeError as exc:
            assert exc.message
