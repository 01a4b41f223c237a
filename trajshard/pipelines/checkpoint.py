"""A job's resumable state under ``OUT/.trajshard/``: the plan, and a record per finished group.

- ``plan.json``: what pass 2 will write (config, tokenizer and vocabulary hashes, the groups). A
  resumed job recomputes its plan (pass 1 is deterministic) and refuses to go on when it differs.
- ``groups/<index:06d>.json``: one finished pass-2 task (its parts with bytes and sha256, its
  quarantined episodes, frame count and round-trip sums), written by the driver when the task's
  result arrives. On resume a group is kept only when every part is there with that size and hash.
- ``promote.json``: written before commit renames parts to shard names, so a commit cut short can
  be undone (shards renamed back to their part names) and run again.
- ``job.json``: what the job is (the source's path, a fingerprint of its listing, the config as
  info.json records it), written with the plan, so ``--resume`` refuses another source or config
  before any work, naming what differs.

The directory is deleted once ``meta/info.json`` is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

from trajshard.io import json_document
from trajshard.pipelines.facts import GroupResult, IngestError
from trajshard.pipelines.plan import Group
from trajshard.storage import Store

STATE = ".trajshard"
STATE_VERSION = 2  # 2: a group is [index, split, episodes, span]


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class JobState:
    def __init__(self, store: Store) -> None:
        self.store = store

    def exists(self) -> bool:
        return self.store.exists(f"{STATE}/plan.json")

    def plan_document(
        self, config: dict, tok_json: dict, vocab_json: dict | None, groups: list[Group]
    ) -> dict:
        return {
            "schema": "trajshard.job_state",
            "version": STATE_VERSION,
            "config": digest(config),
            "tokenizer": digest(tok_json),
            "vocab": digest(vocab_json),
            "groups": [g.to_json() for g in groups],
        }

    def start(self, plan: dict, resume: bool) -> dict[int, GroupResult]:
        """Record the plan; with ``resume``, return the groups already finished under the same plan."""
        done: dict[int, GroupResult] = {}
        if resume and self.exists():
            old = json.loads(self.store.read_bytes(f"{STATE}/plan.json"))
            if old.get("version") != STATE_VERSION:
                raise ValueError(
                    f"cannot resume: the interrupted run was written by another trajshard version (job state "
                    f"version {old.get('version')}, this one reads {STATE_VERSION}). To start over, delete "
                    f"{STATE}/ in OUT and run without --resume (the old parts are then discarded)"
                )
            changed = [k for k in ("config", "tokenizer", "vocab", "groups") if old.get(k) != plan[k]]
            if changed:
                raise ValueError(
                    f"cannot resume: the {', '.join(changed)} differ from the interrupted run's "
                    f"(the source or the config changed). To start over, delete {STATE}/ in OUT and run "
                    "without --resume (the old parts are then discarded)"
                )
            self._undo_promotion()
            done = self._finished(plan)
        else:
            self.clear()
        self.store.write_bytes(f"{STATE}/plan.json", json_document(plan))
        return done

    def job_identity(self) -> dict | None:
        """What the interrupted job recorded about itself, or None (no record: an older run)."""
        if not self.store.exists(f"{STATE}/job.json"):
            return None
        return json.loads(self.store.read_bytes(f"{STATE}/job.json"))

    def record_identity(self, identity: dict) -> None:
        self.store.write_bytes(f"{STATE}/job.json", json_document(identity))

    def record(self, group: Group, result: GroupResult) -> None:
        # compact: json's C encoder (an indented document goes through its pure-Python one, about 6x
        # slower on a group's token counts, and the driver writes one per task while workers run)
        state = json.dumps(result.to_state(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.store.write_bytes(f"{STATE}/groups/{group.index:06d}.json", state.encode())

    def before_promotion(self, moves: list[tuple[str, str]]) -> None:
        self.store.write_bytes(f"{STATE}/promote.json", json_document({"moves": moves}))

    def clear(self) -> None:
        self.store.delete_dir(STATE)

    def _finished(self, plan: dict) -> dict[int, GroupResult]:
        done = {}
        names = set(self.store.list(f"{STATE}/groups"))
        for index, *_ in plan["groups"]:
            name = f"{index:06d}.json"
            if name not in names:
                continue
            result = GroupResult.from_state(json.loads(self.store.read_bytes(f"{STATE}/groups/{name}")))
            if all(
                self.store.exists(f"shards/{p.name}")
                and self.store.digest(f"shards/{p.name}") == (p.bytes, p.sha256)
                for p in result.parts
            ):
                done[index] = result
        return done

    def _undo_promotion(self) -> None:
        if not self.store.exists(f"{STATE}/promote.json"):
            return
        moves = json.loads(self.store.read_bytes(f"{STATE}/promote.json"))["moves"]
        for part, shard in moves:
            if not self.store.exists(f"shards/{part}") and self.store.exists(f"shards/{shard}"):
                self.store.move(f"shards/{shard}", f"shards/{part}")
        self.store.delete(f"{STATE}/promote.json")


LOCK = ".trajshard.lock"


class OutLock:
    """One job at a time in an OUT: ``OUT/.trajshard.lock`` holds the holder's host, pid and start
    time. A local OUT gets the file with an exclusive create; a lock whose holder is a dead process on
    this host is stale and taken over; any other is refused, naming its holder. On object storage the
    check and the write are two requests (a small window remains; docs/operations.md)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        self.held = False

    def __enter__(self) -> OutLock:
        self.made = not self.store.remote and not self.store.local().exists()
        if not self.store.remote:
            self.store.makedirs("")
        for _ in range(2):
            if self._create():
                self.held = True
                return self
            holder = self._holder()
            if holder is None or not _stale(holder):
                break
            self.store.delete(LOCK)  # its process is gone: take it over
        raise OutLocked(self.store.location, holder)

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.store.delete(LOCK)
            self.held = False
        if self.made and not any(self.store.local().iterdir()):
            self.store.local().rmdir()  # a job that wrote nothing leaves no OUT behind

    def _create(self) -> bool:
        data = json.dumps(self.me).encode()
        if self.store.remote:
            if self.store.exists(LOCK):
                return False
            self.store.write_bytes(LOCK, data)
            return True
        try:
            fd = os.open(self.store.local(LOCK), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.store.read_bytes(LOCK))
        except (OSError, ValueError):
            return None


class OutLocked(IngestError):
    def __init__(self, out: str, holder: dict | None) -> None:
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))}"
            if isinstance(holder, dict)
            else "an unknown holder"
        )
        super().__init__(
            f"{out} is in use by another trajshard job ({who}); wait for it to end, or, if that job is "
            f"gone, delete {LOCK} in OUT"
        )


def _stale(holder: dict) -> bool:
    """Whether the lock's holder is a process of this host that no longer runs."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
