"""Running an episode's work: its failures as Problems, and the one retry rule.

A finding about the data (``EpisodeError``) is final. An OS-level exception may be transient (a
network read, a full temporary disk): it becomes a retryable Problem naming where it was raised, and
``Attempts`` grants it ``retries`` more tries before the episode is quarantined. Any other exception
is deterministic and quarantines the episode at once, with where it was raised.
"""

from __future__ import annotations

import os
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
