"""The hostile corpus mixed with good episodes: every good one written once, every bad one quarantined
with its own reason (the same one `validate SOURCE` gives before the job), nothing written outside OUT.
The job runs serially (no Ray)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import CORPUS, HOSTILE_NAMES
from tests.hostile_kinds import KINDS
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


# ---- the corpus of kinds across formats, each case its own source and its own two CLI runs ----------

RUN_SECONDS = {0: 90, 2: 240}  # one CLI run, serial or on Ray: a hang fails the case, never the suite
# as root, but without the capabilities that read a mode-000 file: what an ordinary user sees
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_the_corpus_has_at_least_70_kinds_across_formats():
    assert len(KINDS) >= 70
    assert {k.fmt for k in KINDS.values()} == {"raw", "lerobot", "hdf5", "rlds", "mcap"}
    assert any(k.workers for k in KINDS.values())


def _cli(*args: str, workers: int = 0) -> tuple[int, str, str]:
    """``trajshard ARGS`` in a new process group, killed (the case failed) past its time bound."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [*UNPRIVILEGED, sys.executable, "-m", "trajshard", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=RUN_SECONDS[workers])
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"trajshard {' '.join(args)} did not end in {RUN_SECONDS[workers]} s (a hang)")
    return proc.returncode, out, err


def _tree(case: Path) -> dict[str, tuple]:
    """Every entry under ``case`` except OUT: (type and mode, size, mtime, and the access time of
    the regular files in ``outside``)."""
    found = {}
    for dirpath, dirs, files in os.walk(case):
        dirs[:] = [d for d in dirs if Path(dirpath, d) != case / "out"]
        for name in dirs + files:
            st = os.lstat(Path(dirpath, name))
            outside = Path(dirpath).is_relative_to(case / "outside")
            atime = st.st_atime_ns if stat.S_ISREG(st.st_mode) and outside else 0
            found[os.path.relpath(Path(dirpath, name), case)] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
                atime,
            )
    return found


def _age_outside(outside: Path) -> None:
    """Set each outside file's access time before its change time: on relatime, one read moves it."""
    for p in outside.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            os.utime(p, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_mixed_with_good_episodes(name, synthetic_raw, tmp_path):
    kind = KINDS[name]
    src, outside, out = tmp_path / "src", tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    bad, good = kind.build(src, outside, synthetic_raw)
    _age_outside(outside)
    before = _tree(tmp_path)

    code, text, err = _cli("validate", "--json", str(src))
    assert code == (1 if bad and kind.validate_sees else 0), (code, text, err)
    report = json.loads(text)
    seen = {p["where"]: f"{p['field']}: {p['message']}" for p in report["problems"]}
    if kind.validate_sees:
        assert set(seen) == set(bad), seen
        for eid, words in bad.items():
            assert all(w in seen[eid] for w in words), (eid, seen[eid])

    code, text, err = _cli(
        "ingest",
        str(src),
        str(out),
        "--workers",
        str(kind.workers),
        "--image-size",
        "64",
        "--no-progress",
        *kind.flags,
        workers=kind.workers,
    )
    assert code == (0 if good else 1), err[-3000:]
    if good:
        reasons = quarantine_reasons(out) if (out / "meta" / "quarantine.jsonl").exists() else {}
        assert set(reasons) == set(bad), reasons
        for eid, words in bad.items():
            assert all(w in reasons[eid] for w in words), (eid, reasons[eid])
            assert not reasons[eid].startswith(": "), ("no file named", reasons[eid])
        written = pq.read_table(out / "meta" / "episodes.parquet").column("episode").to_pylist()
        assert sorted(written) == sorted(good)  # each good episode exactly once
        assert f"quarantined {len(bad)} of {len(bad) + len(good)}" in text
    else:  # nothing readable: the job says why (its reasons; the file is in validate's report above)
        assert "could be read" in err and all(w in err for w in next(iter(bad.values()))[1:]), err[-3000:]
    shown = report["notes"] + [text, err]
    if kind.shows:  # an accepted episode with hostile content: inspect shows it, escaped
        code, text, err = _cli("inspect", "--episode", good[-1], str(out))
        assert code == 0 and "\x1b" not in text, (code, text, err)
        shown.append(text)
    for w in kind.shows:
        assert any(w in s for s in shown), (w, shown)
    assert _tree(tmp_path) == before  # nothing written, and nothing outside read, outside OUT
    if out.exists():
        assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


# ---- where OUT cannot be written ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real full file system (ENOSPC), not a simulated one."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr!r}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.timeout(300)
def test_a_full_disk_is_said_and_leaves_no_temporary(synthetic_raw, small_disk):
    code, _, err = _cli(
        "ingest", str(synthetic_raw), str(small_disk / "out"), "--workers", "0", "--no-progress"
    )
    assert code == 1 and "Traceback" not in err, err[-3000:]
    assert "is full (No space left on device) writing shards/" in err
    assert not [p for p in (small_disk / "out").rglob("*") if p.suffix in (".tmp", ".part", ".tar")]


@pytest.mark.timeout(120)
def test_out_that_is_a_file_or_not_writable_is_one_line_exit_2(synthetic_raw, tmp_path):
    (tmp_path / "file").write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    for out, words in ((tmp_path / "file", "is a file"), (locked / "out", "is not writable")):
        code, _, err = _cli("ingest", str(synthetic_raw), str(out), "--workers", "0")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: OUT {out} {words}"), err


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _show(pids):
    return {
        p: (
            Path(f"/proc/{p}/cmdline").read_bytes()[:400],
            Path(f"/proc/{p}/status").read_text().split("PPid:")[1][:8],
        )
        for p in pids
    }


def _alive(pids: set[int]) -> set[int]:
    return {
        p
        for p in pids
        if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes()
    }


@pytest.mark.timeout(400)
def test_a_sigkilled_drivers_ray_processes_are_ended_at_the_next_start(many_raw, synthetic_raw, tmp_path):
    """kill -9 of a driver on an embedded Ray: what Ray leaves (its agents) is gone after the next start."""
    cmd = [sys.executable, "-m", "trajshard", "ingest", str(many_raw), str(tmp_path / "a"), "--workers", "2"]
    driver = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    ray_procs: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while len(ray_procs) < 6 and time.monotonic() < deadline and driver.poll() is None:
            ray_procs |= _descendants(driver.pid)
            time.sleep(0.2)
        assert len(ray_procs) >= 6, "the embedded Ray did not start"
        time.sleep(2)
        ray_procs |= _descendants(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        time.sleep(8)  # what Ray ends itself (its head processes share the driver's fate) is gone by now
        left = _alive(ray_procs)
        code, _, err = _cli(
            "ingest", str(synthetic_raw), str(tmp_path / "b"), "--workers", "0", "--no-progress"
        )
        assert code == 0, err[-2000:]
        assert not _alive(ray_procs), (left, _alive(ray_procs), _show(_alive(ray_procs)))
        if left:
            assert f"ended {len(left)} leftover Ray processes of a dead driver" in err
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in _alive(ray_procs):  # only this test's own processes
            os.kill(pid, signal.SIGKILL)
