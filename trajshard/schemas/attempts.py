"""Running an episode's work: its failures as Problems, and the one retry rule.

A finding about the data (``EpisodeError``) is final. An OS-level exception may be transient (a
network read, a full temporary disk): it becomes a retryable Problem naming where it was raised, and
``Attempts`` grants it ``retries`` more tries before the episode is quarantined. Any other exception
is deterministic and quarantines the episode at once, with where it was raised.

``Watchdog`` is the per-episode time limit. In a Ray worker (``hard``) an episode past its limit ends
the worker process (exit status ``EXIT_TIMEOUT``): nothing half-written survives it, and the driver
runs the task's episodes again one by one, so only this one is quarantined. In the driver (the serial
executor) it interrupts the main thread with ``EpisodeTimeout`` instead, which quarantines the episode.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from trajshard.schemas.episode import EpisodeError
from trajshard.schemas.problems import EpisodeFiltered, Filtered, Problem

T = TypeVar("T")
# what may pass on a second try (a network read, a full temporary disk); any other exception is
# deterministic (a number too large, a string that cannot be encoded, nesting too deep): tried once
TRANSIENT = (OSError, TimeoutError, MemoryError)


def guarded(
    episode_id: str, work: Callable[[], T], passthrough: tuple[type[BaseException], ...] = ()
) -> T | Problem:
    """``work()``, or the Problem it raised, recorded against ``episode_id``. Exceptions in ``passthrough`` (not the
    episode's fault, such as an unwritable output) propagate."""
    try:
        return work()
    except passthrough:
        raise
    except EpisodeError as exc:
        return Problem(episode_id, exc.where, exc.message)
    except EpisodeFiltered as exc:
        return Filtered(episode_id, "filter", exc.reason)
    except EpisodeTimeout as exc:
        return Problem(episode_id, "", str(exc))
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still quarantines, with its cause
        return Problem(episode_id, "", unexpected(exc), retryable=isinstance(exc, TRANSIENT))


class Attempts:
    """Failures counted per episode: whether one gets another try, and its final record."""

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self.failures: Counter[str] = Counter()

    def again(self, problem: Problem) -> bool:
        """Count this failure; True when the episode gets another try."""
        self.failures[problem.where] += 1
        return problem.retryable and self.failures[problem.where] <= self.retries

    def final(self, problem: Problem) -> Problem:
        """The quarantine record: a retried failure says how often it failed."""
        tries = self.failures[problem.where]
        if not problem.retryable or tries < 2:
            return problem
        return replace(problem, message=f"{problem.message}; failed {tries} times")


def retried(episode_id: str, work: Callable[[], T], retries: int) -> T | Problem:
    """``work()`` tried up to ``1 + retries`` times while it fails unexpectedly; its result or the
    final Problem."""
    attempts = Attempts(retries)
    while True:
        result = guarded(episode_id, work)
        if not isinstance(result, Problem) or not attempts.again(result):
            return result if not isinstance(result, Problem) else attempts.final(result)


def unexpected(exc: BaseException) -> str:
    """The traceback's last line, and where it was raised."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"unexpected error: {last}{where}"


EXIT_TIMEOUT = 86  # exit status of a worker process the watchdog ended
_hard = False  # whether this process is a worker that may end itself (set by the Ray layer)


class EpisodeTimeout(Exception):
    """An episode ran past the time limit (raised in the main thread of a serial run)."""


def end_worker_on_timeout(hard: bool = True) -> None:
    """Declare this process a task worker: an episode past its limit ends the process."""
    global _hard
    _hard = hard


class Watchdog:
    """The time limit of one episode at a time: ``with dog.episode(eid): ...``. Invariant: at most one
    episode is armed on the process's watchdog thread, and it is disarmed when its block ends."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit

    def episode(self, episode_id: str) -> _Armed:
        return _Armed(self.limit, episode_id)


def timeout_message(limit: float) -> str:
    return f"took more than {limit:g} s (the episode time limit, --episode-timeout)"


class _Armed:
    """One episode's limit, armed on the process's watchdog thread while its block runs."""

    def __init__(self, limit: float | None, episode_id: str) -> None:
        self.limit, self.episode_id, self.expired = limit, episode_id, False
        self.deadline = 0.0
        self.dog: _Dog | None = None

    def __enter__(self) -> _Armed:
        main = threading.current_thread() is threading.main_thread()
        if self.limit is None or not (_hard or main):
            return self  # a thread that is neither a worker's nor the main one: no limit enforced
        if not _hard:
            signal.signal(signal.SIGALRM, _on_alarm)  # stays: it ignores an alarm no episode armed
        self.dog = _Dog.get()
        if self.dog is not None:
            self.deadline = time.monotonic() + self.limit
            self.dog.arm(self)
        return self

    def __exit__(self, *exc: object) -> None:
        global _interrupting
        if self.dog is not None:
            self.dog.disarm(self)
        if _interrupting is self:
            _interrupting = None  # an alarm still on its way is ignored

    def expire(self) -> None:
        """Called on the watchdog's thread once the deadline has passed."""
        global _interrupting
        self.expired = True
        if _hard:  # a worker: end it; the driver isolates the episode (see pipelines/isolate.py)
            print(
                f"trajshard: episode {self.episode_id} {timeout_message(self.limit)}; ending this worker",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_TIMEOUT)
        _interrupting = self
        signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)  # interrupts a blocking call


_interrupting: _Armed | None = None  # the episode an alarm was sent for, while its block runs


class _Dog(threading.Thread):
    """The process's one watchdog thread (started once: a thread per episode would cost a stack each
    and could fail to start under a tight address-space limit). Invariant: at most one episode armed."""

    _instance: _Dog | None = None

    def __init__(self) -> None:
        super().__init__(name="trajshard-watchdog", daemon=True)
        self.cond = threading.Condition()
        self.armed: _Armed | None = None

    @classmethod
    def get(cls) -> _Dog | None:
        """The running watchdog, started on first use; None (no limit, said once) when no thread starts."""
        if cls._instance is None or not cls._instance.is_alive():
            dog = cls()
            try:
                dog.start()
            except RuntimeError as exc:
                print(f"trajshard: no episode time limit: {exc}", file=sys.stderr, flush=True)
                return None
            cls._instance = dog
        return cls._instance

    def arm(self, armed: _Armed) -> None:
        with self.cond:
            self.armed = armed
            self.cond.notify()

    def disarm(self, armed: _Armed) -> None:
        with self.cond:
            if self.armed is armed:
                self.armed = None

    def run(self) -> None:
        with self.cond:
            while True:
                armed = self.armed
                left = None if armed is None else armed.deadline - time.monotonic()
                if left is None or left > 0:
                    self.cond.wait(left)
                    continue
                self.armed = None
                armed.expire()


def _on_alarm(signum: int, frame: object) -> None:
    armed = _interrupting
    if armed is not None:
        raise EpisodeTimeout(timeout_message(armed.limit))
