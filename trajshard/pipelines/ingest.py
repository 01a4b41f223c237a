"""The ingest job on Ray: the only module that knows Ray.

``run_ingest`` runs ``pipelines/job.py``'s driver with a :class:`RayExecutor`, or, with ``workers =
0``, with the serial executor (no Ray at all). Without an address the executor starts an embedded
local Ray; with ``--address auto``, ``ray://...`` or ``RAY_ADDRESS`` it joins a cluster. At most
``workers`` tasks are in flight; tasks return small summaries, so what waits in the object store
stays bounded.

A task whose worker dies (out of memory, the episode watchdog, a crash) is re-run by Ray once
(``TASK_RETRIES``: a node lost); lost again, it comes back to the driver as ``tasks.Lost``, which
runs its episodes alone to find the one at fault (see ``job.isolate_pass1`` and ``isolate_pass2``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ray

from trajshard.config import JobConfig, RunConfig
from trajshard.io import parse_size
from trajshard.pipelines.facts import IngestError, IngestReport
from trajshard.pipelines.job import SerialExecutor, run_job
from trajshard.pipelines.shards import ShardWriteError
from trajshard.pipelines.tasks import Lost, TaskContext
from trajshard.schemas.attempts import end_worker_on_timeout

TASK_RETRIES = 1  # Ray re-runs a task lost with its worker or node
WRITE_RETRIES = 3  # pass 2 re-runs a group after a ShardWriteError (a transient object-store write)
# a task that died with its worker: its episodes are isolated, never the job ended
LOST = (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError)

__all__ = ["IngestError", "IngestReport", "RayExecutor", "run_ingest"]


def run_ingest(
    source_path: str, out: str, cfg: JobConfig, progress: bool | None = None, resume: bool = False
) -> IngestReport:
    """Ingest SOURCE into OUT on Ray (or serially with ``workers = 0``); see ``job.run_job``."""
    executor = SerialExecutor() if cfg.run.workers == 0 else RayExecutor(cfg.run)
    return run_job(source_path, out, cfg, executor, progress, resume)


def _in_worker(fn: Callable, context: TaskContext, unit: object) -> object:
    """``fn(context, unit)`` in a Ray worker, where an episode past its time limit ends the process."""
    end_worker_on_timeout()
    return fn(context, unit)


@functools.cache
def _remote(fresh: bool = False):
    """``_in_worker`` as a Ray remote function (each task named after its ``fn`` by ``map``). ``fresh``:
    an isolating run, already a retry, so not retried again; its worker exits after it (so a thread
    left running in it ends with it)."""
    if fresh:
        return ray.remote(num_cpus=1, max_retries=0, max_calls=1)(_in_worker)
    return ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_in_worker)


class RayExecutor:
    """Maps tasks over Ray workers, at most ``workers`` (or, ahead, a queue of them) in flight."""

    def __init__(self, run: RunConfig) -> None:
        self.run = run
        self.workers = run.workers or 1
        address = run.address or os.environ.get("RAY_ADDRESS")
        tasks = f"{run.workers} tasks at once" if run.workers else "a task per CPU"
        self.where = (
            f"on the Ray cluster at {address}, {tasks}"
            if address
            else (
                f"on an embedded local Ray, {run.workers or os.cpu_count()} tasks at once (Ray starts first)"
            )
        )

    @contextmanager
    def running(self) -> Iterator[RayExecutor]:
        """Ray joined or started for the job's passes, and stopped after them when this started it."""
        owns = _init_ray(self.run)
        try:
            self.workers = self.run.workers or max(
                1, int(ray.available_resources().get("CPU", 1) / self.run.task_cpus)
            )
            yield self
        finally:
            if owns:
                ray.shutdown()

    def map(
        self,
        fn: Callable,
        context: TaskContext,
        units: list,
        on_result: Callable,
        ahead: bool = False,
        fresh: bool = False,
    ) -> None:
        """Tasks ``fn(context, unit)`` with a bounded number in flight; each result to ``on_result(index,
        result)`` as it arrives, a task whose worker died (after Ray's retries) as ``Lost``. ``fresh``:
        each task in a worker of its own, which exits after it. A task that raises ends the job."""
        opts: dict = {"num_cpus": self.run.task_cpus, "name": fn.__name__}
        if self.run.task_memory:
            opts["memory"] = parse_size(self.run.task_memory)
        if ahead:
            opts["retry_exceptions"] = [ShardWriteError]
            if not fresh:
                opts["max_retries"] = WRITE_RETRIES
        ctx_ref = ray.put(context)
        limit = self._queue_depth() if ahead else self.workers
        pending: dict[ray.ObjectRef, int] = {}
        nxt = 0
        try:
            while nxt < len(units) or pending:
                while nxt < len(units) and len(pending) < limit:
                    pending[_remote(fresh).options(**opts).remote(fn, ctx_ref, units[nxt])] = nxt
                    nxt += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    on_result(pending.pop(ref), self._result(ref))
        except ray.exceptions.RayError as exc:
            for ref in pending:
                ray.cancel(ref)
            raise IngestError(
                f"{fn.__name__}: a task failed after {TASK_RETRIES} retries: {str(exc).strip().splitlines()[-1]}. "
                "Finished groups are recorded: run again with --resume to go on"
            ) from exc

    def _result(self, ref: ray.ObjectRef) -> object:
        """A task's result, or ``Lost`` saying why when its worker died."""
        try:
            return ray.get(ref)
        except LOST as exc:
            limit = self.run.task_memory
            why = f"the limit is {limit} per task" if limit else "no --task-memory: the machine's memory"
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            return Lost(
                f"the worker running this episode was killed (out of memory? {why}; or a crash): {last}"
            )

    def _queue_depth(self) -> int:
        """Tasks to keep submitted: one more per worker, queued in Ray behind the running one so no
        worker waits for the driver's round trip between tasks, but only when Ray itself cannot run
        more than ``workers`` at once; else ``workers``, so ``--workers`` still caps the tasks that
        run (a cluster, a Ray already running)."""
        capacity = int(ray.cluster_resources().get("CPU", 0) / self.run.task_cpus + 1e-9)
        return 2 * self.workers if capacity <= self.workers else self.workers


def _init_ray(run: RunConfig) -> bool:
    """Join or start Ray; True when this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = run.address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        # its token notice is about a cluster's users; an embedded Ray of one job keeps token auth, quietly
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # "local": a new embedded Ray, never a cluster that happens to run on this machine
        ray.init(address="local", num_cpus=run.workers or os.cpu_count(), **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True
