"""The driver's logic without Ray (pipelines/job.py, the serial executor): pass 1's summary, span
settling, the quarantine limit, planning and commit, and a whole job in one process."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from trajshard.config import JobConfig
from trajshard.pipelines.facts import EpisodeFacts, GroupResult
from trajshard.pipelines.job import IngestError, SerialExecutor, check_quarantine, run_job, settle_spans
from trajshard.pipelines.merge import Pass1Merger
from trajshard.pipelines.plan import Group
from trajshard.pipelines.shards import PartInfo
from trajshard.pipelines.stats import StreamStats
from trajshard.schemas.problems import Problem
from trajshard.sources.tables import read_table


def facts(
    part: str, source: str, action_dims: int = 2, cameras: tuple[str, ...] = ("front",)
) -> EpisodeFacts:
    values = np.arange(6 * action_dims, dtype=np.float32).reshape(6, action_dims)
    stats = {"action": StreamStats.from_values(values), "state": StreamStats.from_values(values)}
    return EpisodeFacts(
        part, source, 6, 0.0, 0.5, {}, (action_dims, action_dims, cameras, "action"), stats,
        ("a",) * action_dims, ("a",) * action_dims, cameras, "arm", "action",
    )  # fmt: skip


def cut_by_a_gap(root, episode: str, start: float, stop: float) -> None:
    """Drop the proprio and action rows of ``episode`` in [start, stop): a gap the aligner splits at."""
    for name in ("proprio", "action"):
        (path,) = (root / episode).glob(f"{name}.*")
        table = read_table(str(path))
        t = table.column("timestamp").to_numpy()
        keep = np.flatnonzero((t < start) | (t >= stop))
        path.unlink()
        pq.write_table(table.take(keep), root / episode / f"{name}.parquet")


def test_the_summary_holds_every_quarantined_episode_of_pass_1():
    merger = Pass1Merger(["x", "x_part01", "c", "d", "e"])
    merger.add(1, [[facts("c", "c", action_dims=3)], [facts("d", "d")]])
    merger.add(0, [[facts("x_part00", "x"), facts("x_part01", "x")], [facts("x_part01", "x_part01")]])
    merger.add(2, [Problem("e", "action.parquet", "NaN in dim 0")])
    summary = merger.finish()
    assert [f.episode for f in summary.facts] == ["x_part01", "d"]
    assert {q.where: q.field for q in summary.quarantined} == {
        "e": "action.parquet",
        "x": "streams",
        "c": "streams",
    }
    assert summary.streams["action"]["count"] == 6 * 2  # x_part01 and d; nothing of the quarantined x
    assert summary.sketch is not None


def test_a_gap_split_episode_whose_part_ids_clash_is_recorded_and_counts_reconcile(raw_copy, tmp_path):
    """ep_001 is cut by a gap into ep_001_part00 and ep_001_part01, and an episode of that second id
    exists: ep_001 is quarantined, listed in quarantine.jsonl and counted in info.json."""
    cut_by_a_gap(raw_copy, "ep_001", 1.0, 2.5)
    shutil.copytree(raw_copy / "ep_002", raw_copy / "ep_001_part01")
    out = tmp_path / "out"
    report = run_job(
        str(raw_copy), str(out), JobConfig.from_flags(workers=0), SerialExecutor(), progress=False
    )
    records = [json.loads(line) for line in (out / "meta" / "quarantine.jsonl").read_text().splitlines()]
    assert [(r["episode"], r["file"]) for r in records] == [("ep_001", "streams")]
    assert "taken by other episodes" in records[0]["reason"]
    counts = json.loads((out / "meta" / "info.json").read_text())["counts"]
    assert counts["episodes_input"] == 9 == counts["episodes_written"] + counts["episodes_quarantined"]
    assert (report.episodes_written, report.episodes_quarantined) == (8, 1)


def part(name: str, episodes: list[str]) -> PartInfo:
    return PartInfo(name, 4, 100, "0" * 64, episodes)


def test_settle_spans_drops_every_span_of_an_episode_quarantined_in_one():
    groups = [
        Group(0, "train", ("a",)),
        Group(1, "train", ("b",), (0, 8)),
        Group(2, "train", ("b",), (8, 16)),
    ]
    results = [
        GroupResult([part("p0", ["a"])], [], 4),
        GroupResult([part("p1", ["b"])], [], 8),
        GroupResult([], [Problem("b", "front.mp4", "decode failed")], 0),
    ]
    settled = settle_spans(groups, results)
    assert [g.index for g, _ in settled] == [0, 1, 2]
    assert settled[0][1] is results[0]
    assert [r.parts for _, r in settled[1:]] == [[], []]
    assert [q.where for _, r in settled for q in r.quarantined] == ["b"]  # one record, not one per span


def test_the_quarantine_limit_names_the_common_reasons():
    cfg = JobConfig.from_flags(max_quarantine_fraction=0.5)
    bad = [Problem(f"ep_{i}", "action.parquet", f"NaN in dim {i}") for i in range(3)]
    check_quarantine(cfg, bad[:2], 4, "after pass 1")  # half: allowed
    with pytest.raises(IngestError, match=r"3 of 4 episodes [^$]* 3 x action.parquet: NaN in dim #"):
        check_quarantine(cfg, bad, 4, "after pass 1")


def test_a_job_with_no_readable_episode_says_why(raw_copy, tmp_path):
    for p in raw_copy.glob("ep_*/proprio.*"):
        p.unlink()
    with pytest.raises(IngestError, match=r"no episode of 8 could be read; first reasons: \['missing"):
        run_job(str(raw_copy), str(tmp_path / "out"), JobConfig(), SerialExecutor(), progress=False)
    assert not (tmp_path / "out" / ".trajshard-handoff").exists()


class StopsInPass2(SerialExecutor):
    """The serial executor, stopped (as by Ctrl-C) when pass 2 starts; records the passes it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def map(self, fn, context, units, on_result, ahead=False) -> None:
        self.ran.append(fn.__name__)
        if fn.__name__ == "pass2_group":
            raise KeyboardInterrupt
        super().map(fn, context, units, on_result, ahead)


def test_resume_refuses_another_source_or_config_before_any_work(synthetic_raw, raw_copy, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_job(str(synthetic_raw), out, JobConfig(), StopsInPass2(), progress=False)
    for source, cfg, named in (
        (synthetic_raw, JobConfig.from_flags(fps=5), r"fps \(10.0 there, 5 now\)"),
        (raw_copy, JobConfig(), r"differs: source \("),
    ):
        spy = StopsInPass2()
        with pytest.raises(IngestError, match=r"cannot resume: the unfinished job .*" + named):
            run_job(str(source), out, cfg, spy, progress=False, resume=True)
        assert spy.ran == []  # refused before pass 1
    report = run_job(str(synthetic_raw), out, JobConfig(), SerialExecutor(), progress=False, resume=True)
    assert report.episodes_written == 8 and not report.already_complete


def test_resume_on_a_finished_dataset_says_it_is_complete_or_names_what_differs(synthetic_raw, tmp_path):
    from click.testing import CliRunner

    from trajshard.cli import main

    out = tmp_path / "out"
    run_job(str(synthetic_raw), str(out), JobConfig(), SerialExecutor(), progress=False)
    assert json.loads((out / "meta" / "info.json").read_text())["source"]["fingerprint"].startswith("sha256:")
    done = CliRunner().invoke(main, ["ingest", str(synthetic_raw), str(out), "--resume", "--workers", "0"])
    assert done.exit_code == 0 and "already complete" in done.output and "wrote" not in done.output
    other = CliRunner().invoke(
        main,
        ["ingest", str(synthetic_raw), str(out), "--resume", "--workers", "0", "--fps", "5", "--bins", "64"],
    )
    assert other.exit_code != 0 and "cannot resume: the finished dataset" in other.output
    assert "bins (256 there, 64 now)" in other.output and "fps (10.0 there, 5.0 now)" in other.output
    shutil.rmtree(synthetic_raw.parent / "fewer", ignore_errors=True)
    fewer = shutil.copytree(synthetic_raw, tmp_path / "fewer")
    shutil.rmtree(fewer / "ep_007")
    moved = CliRunner().invoke(main, ["ingest", str(fewer), str(out), "--resume", "--workers", "0"])
    assert moved.exit_code != 0 and "the source's episodes (another listing)" in moved.output
