"""Bad episodes are quarantined with a clear reason each; every other episode is written; counts reconcile."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.hostile import frames_do_not_decode
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output


def test_bad_episodes_quarantined_rest_written(raw_copy, tmp_path):
    # ep_000: the front video is garbage from its first byte (fails when probed, in pass 1)
    front = raw_copy / "ep_000" / "front.mp4"
    front.write_bytes(
        np.random.default_rng(0).integers(0, 256, front.stat().st_size, dtype=np.uint8).tobytes()
    )
    # ep_002: NaN actions
    act = pq.read_table(raw_copy / "ep_002" / "action.parquet")
    col = act.column(1).to_numpy().copy()
    col[5] = np.nan
    pq.write_table(
        act.set_column(1, act.schema.field(1), pa.array(col)), raw_copy / "ep_002" / "action.parquet"
    )
    # ep_003: no proprio file
    for p in (raw_copy / "ep_003").glob("proprio.*"):
        p.unlink()
    # ep_007: the video opens and indexes, but its frames do not decode (fails in pass 2)
    frames_do_not_decode(raw_copy / "ep_007")  # the coded frames zeroed, the index kept
    # a hostile directory name
    (raw_copy / "ep 008").mkdir()

    out = tmp_path / "out"
    report = run_ingest(
        str(raw_copy), str(out), JobConfig.from_flags(workers=0, task_steps=60), progress=False
    )
    lines = [json.loads(x) for x in (out / "meta" / "quarantine.jsonl").read_text().splitlines()]
    reasons = {q["episode"]: q for q in lines}
    assert set(reasons) == {"ep_000", "ep_002", "ep_003", "ep_007", "ep 008"}
    assert reasons["ep_000"]["file"] == "front.mp4" and "cannot open" in reasons["ep_000"]["reason"]
    assert reasons["ep_002"]["file"] == "action.parquet" and "NaN" in reasons["ep_002"]["reason"]
    assert reasons["ep_003"]["file"] == "proprio" and "missing" in reasons["ep_003"]["reason"]
    assert reasons["ep_007"]["file"] == "front.mp4" and "decode failed" in reasons["ep_007"]["reason"]
    assert "[A-Za-z0-9_-]+" in reasons["ep 008"]["reason"]

    assert report.episodes_input == 9 and report.episodes_written == 4 and report.episodes_quarantined == 5
    written = pq.read_table(out / "meta" / "episodes.parquet").column("episode").to_pylist()
    assert written == ["ep_001", "ep_004", "ep_005", "ep_006"]
    manifest = json.loads((out / "meta" / "manifest.json").read_text())
    in_shards = [e for s in manifest["shards"] for e in s["episodes"]]
    assert sorted(set(in_shards)) == written
    v = validate_output(out)
    assert v.ok, v.problems
    assert v.episodes == 4
