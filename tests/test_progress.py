"""Progress lines for jobs without a terminal: counts, rate, quarantined, ETA."""

from __future__ import annotations

import logging

from trajshard.pipelines.progress import Progress


def test_log_lines_count_episodes_frames_quarantine_and_eta(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 20.0])
    monkeypatch.setattr("trajshard.pipelines.progress.time.monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="trajshard.ingest"):
        p = Progress("pass 2: shards", 40, show=False, every_s=5)
        p.update(10, frames=3000, quarantined=1)  # at 10 s
        p.update(10, frames=3000)  # at 20 s
    lines = [r.getMessage() for r in caplog.records]
    assert lines.pop(0) == "pass 2: shards: started, 40 episodes"  # at once, before any task ends
    assert lines[0] == "pass 2: shards: 10/40 episodes (25.0%), 300 frames/s, 1 quarantined, ETA 0:00:30"
    assert lines[1] == "pass 2: shards: 20/40 episodes (50.0%), 300 frames/s, 1 quarantined, ETA 0:00:20"


def test_a_resumed_pass_counts_only_new_work_in_its_rate(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 10.0])
    monkeypatch.setattr("trajshard.pipelines.progress.time.monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="trajshard.ingest"):
        p = Progress("pass 2: shards", 100, show=False, every_s=1, done=50)
        p.update(25)
    assert caplog.records[0].getMessage() == "pass 2: shards: 50 of 100 episodes already done (resumed)"
    assert caplog.records[1].getMessage().endswith("75/100 episodes (75.0%), 0 quarantined, ETA 0:00:10")


def test_verbose_logs_a_line_per_finished_task_and_only_then(caplog, monkeypatch):
    """`trajshard -v` sets the root logger to INFO; trajshard.tasks then logs each finished task."""
    with caplog.at_level(logging.WARNING, logger="trajshard.tasks"):
        Progress("pass 1: statistics", 4, show=False).update(2, task="task 1/2: 2 episodes a..b")
    assert not [r for r in caplog.records if r.name == "trajshard.tasks"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trajshard.tasks"):
        p = Progress("pass 1: statistics", 4, show=False)
        p.update(2, task="task 1/2: 2 episodes a..b")
        p.update(2, task="task 2/2: 2 episodes c..d")
    tasks = [r.getMessage() for r in caplog.records if r.name == "trajshard.tasks"]
    assert tasks == [
        "pass 1: statistics: task 1/2: 2 episodes a..b (2/4 episodes)",
        "pass 1: statistics: task 2/2: 2 episodes c..d (4/4 episodes)",
    ]
