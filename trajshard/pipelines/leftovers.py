"""Embedded-Ray processes that a SIGKILLed driver left behind, found and ended at the next start.

Ray ends the head processes of an embedded Ray with their driver (kernel fate-sharing: each is
started with PR_SET_PDEATHSIG). The two agents the raylet starts, ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent``, are not: they notice that the raylet died, then block reporting it to the
GCS, which died too, and stay forever (Ray 2.x; after ``kill -9`` of an ingest driver).

A process is a leftover of a dead driver when all of these hold, so a live Ray (this machine's
cluster, another job's embedded Ray) is never touched:

- it belongs to this user and is a Ray process: its command line starts with ``ray::`` (a worker
  or an agent) or runs Ray's ``default_worker.py`` (a worker still starting up);
- its parent is init (pid 1): its raylet is gone (Ray's agents use the same test on themselves);
- its command line names, or it holds a file open in, a Ray session directory
  ``.../session_<date>_<time>_<us>_<pid>/`` whose ``<pid>`` (the process that started that Ray: the
  driver) is no longer alive;
- no raylet or GCS server of that session is alive. A cluster started by ``ray start --head`` also
  has a dead starter (the ``ray start`` command exits) and orphaned ``ray::`` processes, but its
  raylet and GCS run: it is never touched.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

SESSION_RE = re.compile(r"/(session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_(\d+))(?:/|\s|$)")
HEADS = (b"raylet", b"gcs_server")  # a session with one of these alive is a live Ray
WORKER = b"/ray/_private/workers/default_worker.py"


def _session(pid: str, proc: Path, cmdline: bytes) -> tuple[str, int] | None:
    """The Ray session (its directory name, its driver's pid) the process names or has a file open
    in, or None."""
    m = SESSION_RE.search(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    if m:
        return m.group(1), int(m.group(2))
    try:
        fds = list((proc / pid / "fd").iterdir())
    except OSError:
        return None
    for fd in fds:
        try:
            m = SESSION_RE.search(os.readlink(fd))
        except OSError:
            continue
        if m:
            return m.group(1), int(m.group(2))
    return None


def _alive(pid: int, proc: Path) -> bool:
    return (proc / str(pid)).exists()


def find_leftovers(proc: Path = Path("/proc")) -> list[int]:
    """Pids of this user's embedded-Ray processes whose raylet and driver are dead."""
    candidates, live = [], set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
        program = cmdline.split(b"\0", 1)[0]
        if any(program.endswith(h) for h in HEADS):
            if (session := _session(entry.name, proc, cmdline)) is not None:
                live.add(session[0])
        elif (cmdline.startswith(b"ray::") or WORKER in cmdline) and ppid == 1:
            if (session := _session(entry.name, proc, cmdline)) is not None:
                candidates.append((int(entry.name), session))
    return sorted(pid for pid, (name, driver) in candidates if name not in live and not _alive(driver, proc))


def end_leftovers() -> list[int]:
    """SIGKILL every leftover (see the module docstring); the pids ended."""
    ended = []
    for pid in find_leftovers():
        try:
            os.kill(pid, signal.SIGKILL)
            ended.append(pid)
        except OSError:
            continue  # gone already, or not ours after all
    return ended
