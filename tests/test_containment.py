"""Untrusted sources cannot make a reader open a file outside them, allocate without a bound or hang;
two jobs cannot share one OUT (trajshard/sources/contain.py, sources/hdf5.py, pipelines/checkpoint.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import shared_data

from trajshard.config import JobConfig
from trajshard.pipelines.checkpoint import LOCK, OutLocked
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.schemas.episode import EpisodeError
from trajshard.sources.hdf5 import HDF5Source
from trajshard.sources.lerobot import LeRobotSource

SERIAL = JobConfig.from_flags(workers=0)


def robomimic(path, demos: int = 2, steps: int = 40) -> None:
    with h5py.File(path, "w") as h:
        h.create_group("data").attrs["env"] = "Lift"
        for i in range(demos):
            g = h.create_group(f"data/demo_{i}")
            g["actions"] = np.random.default_rng(i).normal(size=(steps, 3)).astype(np.float32)
            g["states"] = np.random.default_rng(i + 9).normal(size=(steps, 5)).astype(np.float32)


def hostile_hdf5(root, outside) -> None:
    """demo_0 good; demo_1 actions through an external link; demo_2 states in external raw storage
    (a file outside); demo_3 actions a virtual dataset over an outside file; demo_4 a never-written
    chunked dataset declaring 150M x 2 values."""
    secret = outside / "secret.bin"
    secret.write_bytes(b"root:x:0:0:" * 64)
    with h5py.File(outside / "other.hdf5", "w") as o:
        o["actions"] = np.ones((40, 3), np.float32)
    with h5py.File(root / "evil.hdf5", "w") as h:
        h.create_group("data").attrs["env"] = "Lift"
        rng = np.random.default_rng(0)
        for i in range(5):
            g = h.create_group(f"data/demo_{i}")
            g["actions"] = rng.normal(size=(40, 3)).astype(np.float32)
            g["states"] = rng.normal(size=(40, 5)).astype(np.float32)
        del h["data/demo_1/actions"]
        h["data/demo_1/actions"] = h5py.ExternalLink(str(outside / "other.hdf5"), "actions")
        del h["data/demo_2/states"]
        h["data/demo_2"].create_dataset("states", (32, 5), "<f4", external=[(str(secret), 0, 640)])
        del h["data/demo_3/actions"]
        layout = h5py.VirtualLayout(shape=(40, 3), dtype="f4")
        layout[:] = h5py.VirtualSource(str(outside / "other.hdf5"), "actions", shape=(40, 3))
        h["data/demo_3"].create_virtual_dataset("actions", layout)
        del h["data/demo_4/actions"], h["data/demo_4/states"]
        h["data/demo_4"].create_dataset("actions", (150_000_000, 2), "f8", chunks=(1024, 2))
        h["data/demo_4"].create_dataset("states", (150_000_000, 2), "f8", chunks=(1024, 2))


def test_hdf5_reads_nothing_outside_its_file_and_bounds_what_it_reads(tmp_path):
    root, outside = tmp_path / "src", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    hostile_hdf5(root, outside)
    robomimic(outside / "linked.hdf5")
    (root / "linked.hdf5").symlink_to(outside / "linked.hdf5")
    src = HDF5Source(root)
    ids, rejected = src.plan()
    assert [p.where for p in rejected] == ["linked"] and "outside the source" in rejected[0].message
    reasons = {}
    for eid in ids:
        try:
            src.load(eid)
        except EpisodeError as exc:
            reasons[eid] = exc.message
    assert set(reasons) == {"evil-demo_1", "evil-demo_2", "evil-demo_3", "evil-demo_4"}
    assert "external link" in reasons["evil-demo_1"]
    assert "outside the file" in reasons["evil-demo_2"] and "outside the file" in reasons["evil-demo_3"]
    assert "MiB a state or action array may take" in reasons["evil-demo_4"]
    out = tmp_path / "out"
    report = run_ingest(
        str(root), str(out), JobConfig.from_flags(workers=0, fps=10, no_images=True), progress=False
    )
    assert (report.episodes_written, report.episodes_quarantined) == (1, 5)
    assert b"root:x" not in b"".join(p.read_bytes() for p in (out / "shards").iterdir())


def test_lerobot_templates_cannot_escape_or_explode(tmp_path):
    src = tmp_path / "gr00t"
    shutil.copytree(shared_data("gr00t_pnp_lerobot_v20"), src)
    (tmp_path / "outside").mkdir()
    info = json.loads((src / "meta" / "info.json").read_text())
    for template, words in (
        ("../outside/episode_{episode_index:06d}.parquet", "outside the source"),
        (str(tmp_path / "outside" / "x.parquet"), "outside the source"),
        ("data/{episode_index:0500000000d}.parquet", "pads to 500000000 characters"),
    ):
        (src / "meta" / "info.json").write_text(json.dumps({**info, "data_path": template}))
        with pytest.raises(EpisodeError, match=words):
            LeRobotSource(src).load("episode_000000")


def test_a_fifo_camera_is_refused_not_waited_on(raw_copy, tmp_path):
    (raw_copy / "ep_000" / "front.mp4").unlink()
    os.mkfifo(raw_copy / "pipe")  # inside the source: only its kind is wrong
    (raw_copy / "ep_000" / "front.mp4").symlink_to(raw_copy / "pipe")
    os.mkfifo(raw_copy / "ep_001" / "side.mp4")
    out = tmp_path / "out"
    report = run_ingest(str(raw_copy), str(out), SERIAL, progress=False)
    reasons = {
        r["episode"]: r for r in map(json.loads, (out / "meta" / "quarantine.jsonl").read_text().splitlines())
    }
    assert reasons["ep_000"]["file"] == "front.mp4" and "not a regular file" in reasons["ep_000"]["reason"]
    assert reasons["ep_001"]["file"] == "side.mp4" and "not a regular file" in reasons["ep_001"]["reason"]
    assert report.episodes_written + report.episodes_quarantined == 8


def test_a_second_job_on_one_out_is_refused_naming_the_holder(synthetic_raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": 0}))
    with pytest.raises(OutLocked, match=f"in use by another trajshard job \\(pid {os.getpid()} on"):
        run_ingest(str(synthetic_raw), str(out), SERIAL, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing touched
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "started": 0}))
    run_ingest(str(synthetic_raw), str(out), SERIAL, progress=False)  # a stale lock is taken over
    assert not (out / LOCK).exists() and validate_output(out).ok


def test_two_concurrent_ingests_one_runs_the_other_is_refused(synthetic_raw, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "trajshard", "ingest", str(synthetic_raw), str(out), "--workers", "0"]
    jobs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(j.wait(timeout=300), j.stderr.read()) for j in jobs]
    assert sorted(code for code, _ in results) == [0, 1]
    refused = next(err for code, err in results if code == 1)
    assert "in use by another trajshard job" in refused or "already holds a dataset" in refused
    assert validate_output(out).ok


def test_one_bad_directory_entry_or_episode_never_stops_the_job(raw_copy, tmp_path, monkeypatch):
    from trajshard.reports.validation_source import validate_source
    from trajshard.sources.raw import RawSource

    (raw_copy / "loop").symlink_to(raw_copy / "loop")  # ln -s loop loop
    report = run_ingest(str(raw_copy), str(tmp_path / "out"), SERIAL, progress=False)
    assert (report.episodes_input, report.episodes_written) == (9, 8)
    record = json.loads((tmp_path / "out" / "meta" / "quarantine.jsonl").read_text())
    assert record["episode"] == "loop" and "cannot be followed" in record["reason"]

    real_load = RawSource.load

    def deep(self, episode_id):  # a reader that meets nesting too deep for it in one episode
        if episode_id == "ep_003":
            raise RecursionError("maximum recursion depth exceeded")
        return real_load(self, episode_id)

    monkeypatch.setattr(RawSource, "load", deep)
    found = validate_source(str(raw_copy))
    assert {p.where for p in found.problems} == {"loop", "ep_003"} and found.episodes == 8
    calls = []
    monkeypatch.setattr(RawSource, "load", lambda self, e: calls.append(e) or deep(self, e))
    out = run_ingest(str(raw_copy), str(tmp_path / "out2"), SERIAL, progress=False)
    assert calls.count("ep_003") == 1 and out.episodes_quarantined == 2  # deterministic: not retried
