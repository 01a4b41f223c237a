"""An unexpected (possibly transient) exception in an episode is retried, then quarantined with the
traceback's last line; a finding about the data is quarantined at once. Fault injection: a real raw
source whose first reads of one episode fail."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trajshard.config import JobConfig
from trajshard.pipelines.plan import Group
from trajshard.pipelines.tasks import TaskContext, pass1_batch, pass2_group
from trajshard.schemas.episode import EpisodeError
from trajshard.schemas.problems import Problem
from trajshard.sources.raw import RawSource
from trajshard.tokenizers import fit


class Flaky:
    """A RawSource whose ``load`` of ``episode`` raises ``error`` the first ``failures`` times."""

    def __init__(self, root, episode: str, failures: int, error: Exception) -> None:
        self.real, self.episode, self.left, self.error = RawSource(root), episode, failures, error
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def load(self, episode_id: str):
        if episode_id == self.episode:
            self.calls += 1
            if self.left:
                self.left -= 1
                raise self.error
        return self.real.load(episode_id)


@dataclass(frozen=True)
class Opened:
    """A source spec whose tasks open the given source object."""

    source: object
    path: str = ""
    format: str = "raw"

    def open(self):
        return self.source


def context(source, cfg: JobConfig, out: str = "", tok: dict | None = None) -> TaskContext:
    return TaskContext(Opened(source), cfg, out, tokenizer=tok)


def pass1_episode(source, eid: str, cfg: JobConfig):
    return pass1_batch(context(source, cfg), [eid])[0]


def test_pass1_retries_a_transient_error_then_gives_up_with_its_last_line(synthetic_raw):
    src = Flaky(synthetic_raw, "ep_002", 2, ConnectionResetError("peer reset"))
    facts = pass1_episode(src, "ep_002", JobConfig.from_flags(episode_retries=2))
    assert not isinstance(facts, Problem) and src.calls == 3

    src = Flaky(synthetic_raw, "ep_002", 5, ConnectionResetError("peer reset"))
    q = pass1_episode(src, "ep_002", JobConfig.from_flags(episode_retries=1))
    assert isinstance(q, Problem) and src.calls == 2
    assert q.message.startswith("unexpected error: ConnectionResetError: peer reset (at test_retries.py:")
    assert q.message.endswith("failed 2 times")


def test_a_finding_about_the_data_is_not_retried(synthetic_raw):
    src = Flaky(synthetic_raw, "ep_002", 1, EpisodeError("ep_002", "action.parquet", "NaN in dim 3"))
    q = pass1_episode(src, "ep_002", JobConfig.from_flags(episode_retries=3))
    assert isinstance(q, Problem) and src.calls == 1 and q.field == "action.parquet"


@pytest.mark.parametrize("window", [0, 2])
def test_pass2_retries_an_episode_and_writes_the_same_parts(synthetic_raw, tmp_path, window):
    cfg = JobConfig.from_flags(episode_retries=2, shuffle_window=window)
    real = RawSource(synthetic_raw)
    ids = ["ep_000", "ep_001", "ep_002"]
    facts = [pass1_episode(real, e, cfg)[0] for e in ids]
    stats = facts[0].stats["action"].merge(facts[1].stats["action"]).merge(facts[2].stats["action"])
    tok = fit("uniform", stats.to_json(facts[0].action_names), 256, sketch=stats).to_json()
    group = Group(0, "train", tuple(ids))

    clean = pass2_group(context(RawSource(synthetic_raw), cfg, str(tmp_path / "a"), tok), group)
    flaky = Flaky(synthetic_raw, "ep_001", 2, OSError("read timed out"))
    retried = pass2_group(context(flaky, cfg, str(tmp_path / "b"), tok), group)
    assert not retried.quarantined and flaky.calls == 3
    assert [(p.name, p.sha256) for p in retried.parts] == [(p.name, p.sha256) for p in clean.parts]

    flaky = Flaky(synthetic_raw, "ep_001", 9, OSError("read timed out"))
    gave_up = pass2_group(context(flaky, cfg, str(tmp_path / "c"), tok), group)
    assert [q.where for q in gave_up.quarantined] == ["ep_001"]
    assert "OSError: read timed out" in gave_up.quarantined[0].message and flaky.calls == 3
    assert sum(p.samples for p in gave_up.parts) == facts[0].steps + facts[2].steps
