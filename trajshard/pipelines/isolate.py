"""Killed tasks: find the episode at fault, keep the others.

A task whose worker process died (the OS killed it out of memory, the episode watchdog ended it, a
crash) comes back from the executor as ``Lost`` once Ray's own retry is spent. The driver then runs
each of its episodes alone in a fresh worker (``tasks.run_alone``, under the episode time limit):
an episode whose lone run dies or overruns again is quarantined with that cause; the others are kept
with exactly the results (pass 1) or bytes (pass 2, the group rewritten ``Without`` the culprits, in
its own order) they would have had if the culprit had failed inside the task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from trajshard.pipelines.facts import GroupResult, IngestError
from trajshard.pipelines.plan import Group
from trajshard.pipelines.tasks import (
    Alone,
    Lost,
    TaskContext,
    Without,
    in_group_order,
    pass1_batch,
    pass2_group,
    pass2_probe,
    run_alone,
)
from trajshard.schemas.problems import Problem


class Mapper(Protocol):
    """Runs tasks ``fn(context, unit)``; hands each result to ``on_result(index, result)`` as it
    arrives, or ``Lost`` for a task whose worker died. ``ahead``: keep a task queued behind each
    running one (pass 2's long tasks). ``fresh``: each task in a process of its own."""

    def map(
        self,
        fn: Callable,
        context: TaskContext,
        units: list,
        on_result: Callable,
        ahead: bool = False,
        fresh: bool = False,
    ) -> None: ...


def killed(episode_id: str, lost: Lost) -> Problem:
    """The quarantine record of an episode whose run, alone, was killed or overran."""
    return Problem(episode_id, episode_id, lost.cause)


def isolate_pass1(executor: Mapper, ctx: TaskContext, batches: dict[int, list[str]]) -> dict[int, list]:
    """Lost pass-1 batches' results: each episode run alone in a fresh worker; one lost again (or
    past the time limit) is quarantined, the others' facts are kept, in the batch's order."""
    if not batches:
        return {}
    units = [(i, eid) for i, batch in batches.items() for eid in batch]
    results: dict[tuple[int, str], object] = {}

    def arrived(k: int, result: list | Lost) -> None:
        i, eid = units[k]
        results[i, eid] = killed(eid, result) if isinstance(result, Lost) else result[0]

    alone = [Alone(pass1_batch, [eid], eid) for _, eid in units]
    executor.map(run_alone, ctx, alone, arrived, fresh=True)
    return {i: [results[i, eid] for eid in batch] for i, batch in batches.items()}


def isolate_pass2(executor: Mapper, ctx: TaskContext, groups: list[Group]) -> list[Without]:
    """Lost pass-2 groups, each to be written again without its episodes whose probe (the episode
    alone in a fresh worker, nothing written) was killed or overran."""
    units = [(g, eid) for g in groups for eid in g.episodes]
    bad: dict[int, list[Problem]] = {g.index: [] for g in groups}

    def arrived(k: int, result: Problem | None | Lost) -> None:
        group, eid = units[k]
        if isinstance(result, Lost):  # any other Problem is met again, and recorded, by the rewrite
            bad[group.index].append(killed(eid, result))

    alone = [Alone(pass2_probe, unit, unit[1]) for unit in units]
    executor.map(run_alone, ctx, alone, arrived, fresh=True)
    return [Without(g, tuple(in_group_order(g, bad[g.index]))) for g in groups]


def rewrite_pass2(
    executor: Mapper, ctx: TaskContext, lost: list[Group], arrived: Callable[[Group, GroupResult], None]
) -> None:
    """Lost pass-2 groups isolated, then written again without their culprits, each result to
    ``arrived(group, result)``; a rewrite lost again is not an episode's fault: IngestError."""
    if not lost:
        return
    rewrites = isolate_pass2(executor, ctx, sorted(lost, key=lambda g: g.index))

    def rewritten(k: int, result: GroupResult | Lost) -> None:
        if isinstance(result, Lost):
            raise IngestError(
                f"pass 2: group {rewrites[k].group.index} was lost again without the episodes found at "
                f"fault ({result.cause}). Finished groups are recorded: run again with --resume to go on"
            )
        arrived(rewrites[k].group, result)

    executor.map(pass2_group, ctx, rewrites, rewritten, ahead=True)
