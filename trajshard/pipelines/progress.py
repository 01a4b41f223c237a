"""Job progress: a live bar on a terminal, periodic log lines elsewhere (a cluster job's log), and
with ``trajshard -v`` a line per finished task."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("trajshard.ingest")
# one line per finished task; its own logger (not a child of trajshard.ingest) so that only -v, which
# sets the root logger to INFO, turns it on
task_log = logging.getLogger("trajshard.tasks")


class Progress:
    """Episodes done of a total, frames/s, ETA and quarantined episodes of one pass. Without a bar it
    logs a line when the pass starts, then at most every ``every_s`` seconds, and when it ends."""

    def __init__(self, label: str, total: int, show: bool, every_s: float = 10.0, done: int = 0) -> None:
        self.label, self.total, self.show, self.every_s = label, total, show, every_s
        self.done, self.frames, self.quarantined = done, 0, 0
        self.t0 = self.last = time.monotonic()
        self.start_done = done
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=label, unit="ep", dynamic_ncols=True)
        elif done:
            log.info("%s: %d of %d episodes already done (resumed)", label, done, total)
        else:
            log.info("%s: started, %d episodes", label, total)

    def update(self, episodes: int, frames: int = 0, quarantined: int = 0, task: str = "") -> None:
        """Count a finished task; ``task`` describes it for the per-task line (``-v``)."""
        self.done += episodes
        self.frames += frames
        self.quarantined += quarantined
        now = time.monotonic()
        if task and task_log.isEnabledFor(logging.INFO):
            self._task_line(f"{self.label}: {task} ({self.done}/{self.total} episodes)")
        if self.bar is not None:
            post = f"{self.quarantined} quarantined"
            if self.frames:
                post = f"{self.frames / max(now - self.t0, 1e-9):.0f} frames/s, {post}"
            self.bar.set_postfix_str(post, refresh=False)
            self.bar.update(episodes)
        elif now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            log.info("%s", self.line(now))

    def _task_line(self, text: str) -> None:
        if self.bar is not None:  # above the bar, which tqdm redraws below it
            self.bar.write(f"{task_log.name}: {text}", file=sys.stderr)
        else:
            task_log.info("%s", text)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        fps = f", {self.frames / elapsed:.0f} frames/s" if self.frames else ""
        return (
            f"{self.label}: {self.done}/{self.total} episodes ({100 * self.done / max(self.total, 1):.1f}%)"
            f"{fps}, {self.quarantined} quarantined, ETA {_clock(eta)}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
