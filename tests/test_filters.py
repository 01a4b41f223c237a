"""Episode filters and trims (pipelines/filters.py): exactly the expected episodes are kept, every
other one is recorded with its reason, and written + quarantined + filtered = input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trajshard.config import JobConfig
from trajshard.pipelines.ingest import IngestError, run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources.tables import read_table


def rewrite_table(root, episode: str, name: str, edit) -> None:
    """Read ``<name>.*`` of a raw episode, let ``edit(table)`` change it, write it back as parquet."""
    (path,) = (root / episode).glob(f"{name}.*")
    table = edit(read_table(str(path)))
    path.unlink()
    pq.write_table(table, root / episode / f"{name}.parquet")


def seconds_of(t: pa.Table) -> np.ndarray:
    """The table's timestamps in seconds (int64 columns hold nanoseconds)."""
    ts = t.column("timestamp").to_numpy()
    return ts / 1e9 if np.issubdtype(ts.dtype, np.integer) else ts.astype(np.float64)


def shorten(root, episode: str, seconds: float) -> None:
    for name in ("proprio", "action"):
        rewrite_table(root, episode, name, lambda t: t.filter(pa.array(seconds_of(t) < seconds)))


def hold_start(root, episode: str, seconds: float) -> None:
    """The robot stands still for the first ``seconds``: every value before then equals the first
    value after."""

    def edit(t: pa.Table) -> pa.Table:
        k = int(np.searchsorted(seconds_of(t), seconds))
        cols = {}
        for name in t.column_names:
            values = t.column(name).to_pylist()
            if name != "timestamp":
                values[:k] = [values[k]] * k
            cols[name] = pa.array(values, t.schema.field(name).type)
        return pa.table(cols)

    for name in ("proprio", "action"):
        rewrite_table(root, episode, name, edit)


def set_success(root, episode: str, success: bool | None) -> None:
    path = root / episode / "episode.json"
    meta = json.loads(path.read_text())
    meta.pop("success", None)
    if success is not None:
        meta["success"] = success
    path.write_text(json.dumps(meta))


def test_filters_keep_exactly_the_expected_episodes_and_counts_reconcile(raw_copy, tmp_path):
    set_success(raw_copy, "ep_001", False)
    set_success(raw_copy, "ep_002", None)
    shorten(raw_copy, "ep_004", 1.5)
    for p in (raw_copy / "ep_005").glob("proprio.*"):
        p.unlink()  # quarantined, not filtered
    cfg = JobConfig.from_flags(
        workers=0, success_only=True, min_steps=20, keep_episodes=["ep_00*"], exclude_episodes=["ep_007"]
    )
    out = tmp_path / "out"
    report = run_ingest(str(raw_copy), str(out), cfg, progress=False)
    written = pq.read_table(out / "meta" / "episodes.parquet").column("source_episode").to_pylist()
    assert sorted(set(written)) == ["ep_000", "ep_003", "ep_006"]
    filtered = {
        r["episode"]: r["reason"]
        for r in map(json.loads, (out / "meta" / "filtered.jsonl").read_text().splitlines())
    }
    assert sorted(filtered) == ["ep_001", "ep_002", "ep_004", "ep_007"]
    assert "success is false" in filtered["ep_001"] and "success is unknown" in filtered["ep_002"]
    assert "fewer than filter.min_steps 20" in filtered["ep_004"] and "filter.exclude" in filtered["ep_007"]
    quarantined = (out / "meta" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(q)["episode"] for q in quarantined] == ["ep_005"]
    counts = json.loads((out / "meta" / "info.json").read_text())["counts"]
    assert (counts["episodes_written"], counts["episodes_quarantined"], counts["episodes_filtered"]) == (
        3,
        1,
        4,
    )
    assert counts["episodes_input"] == 8 == 3 + 1 + 4
    assert report.episodes_filtered == 4
    assert validate_output(out).ok
    assert "4 filtered out" in (out / "README.md").read_text()


def test_trim_idle_cuts_the_still_start_and_records_it(raw_copy, tmp_path):
    hold_start(raw_copy, "ep_000", 1.0)
    plain = run_ingest(
        str(raw_copy), str(tmp_path / "plain"), JobConfig.from_flags(workers=0), progress=False
    )
    cfg = JobConfig.from_flags(workers=0, trim_idle=1e-6, keep_episodes=["ep_000", "ep_001"])
    trimmed = run_ingest(str(raw_copy), str(tmp_path / "trim"), cfg, progress=False)
    trims = {
        r["episode"]: (r["start_ticks"], r["end_ticks"])
        for r in map(json.loads, (tmp_path / "trim" / "meta" / "trims.jsonl").read_text().splitlines())
    }
    assert set(trims) == {"ep_000", "ep_001"}
    assert (
        6 <= trims["ep_000"][0] <= 10 and trims["ep_001"][0] <= 1
    )  # the clock starts with the wrist camera (0.25 s)
    steps = dict(
        zip(
            *(
                pq.read_table(tmp_path / d / "meta" / "episodes.parquet").column(c).to_pylist()
                for d in ("trim",)
                for c in ("episode", "steps")
            ),
            strict=True,
        )
    )
    full = dict(
        zip(
            *(
                pq.read_table(tmp_path / "plain" / "meta" / "episodes.parquet").column(c).to_pylist()
                for c in ("episode", "steps")
            ),
            strict=True,
        )
    )
    assert steps["ep_000"] == full["ep_000"] - sum(trims["ep_000"])
    assert trimmed.episodes_filtered == 6 and plain.episodes_filtered == 0
    assert validate_output(tmp_path / "trim").ok


def test_filters_that_leave_nothing_say_so(raw_copy, tmp_path):
    with pytest.raises(IngestError, match="the filters leave none of the 8 episodes"):
        run_ingest(
            str(raw_copy),
            str(tmp_path / "o"),
            JobConfig.from_flags(workers=0, min_steps=10**6),
            progress=False,
        )
    with pytest.raises(ValueError, match="min_steps .* is more than max_steps"):
        JobConfig.from_flags(min_steps=10, max_steps=5)
