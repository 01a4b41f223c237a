"""An unexpected (possibly transient) exception in an episode is retried, then quarantined with the
traceback's last line; a finding about the data is quarantined at once. Fault injection: a real raw
source whose first reads of one episode fail."""

from __future__ import annotations

import pytest

from trajshard.config import JobConfig
from trajshard.pipelines import passes
from trajshard.pipelines.passes import Quarantined, pass1_episode, pass2_group
from trajshard.pipelines.plan import Group
from trajshard.schemas.episode import EpisodeError
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


def test_pass1_retries_a_transient_error_then_gives_up_with_its_last_line(synthetic_raw):
    src = Flaky(synthetic_raw, "ep_002", 2, ConnectionResetError("peer reset"))
    facts = pass1_episode(src, "ep_002", JobConfig(episode_retries=2))
    assert not isinstance(facts, Quarantined) and src.calls == 3

    src = Flaky(synthetic_raw, "ep_002", 5, ConnectionResetError("peer reset"))
    q = pass1_episode(src, "ep_002", JobConfig(episode_retries=1))
    assert isinstance(q, Quarantined) and src.calls == 2
    assert q.reason.startswith("unexpected error: ConnectionResetError: peer reset (at test_retries.py:")
    assert q.reason.endswith("failed 2 times")


def test_a_finding_about_the_data_is_not_retried(synthetic_raw):
    src = Flaky(synthetic_raw, "ep_002", 1, EpisodeError("ep_002", "action.parquet", "NaN in dim 3"))
    q = pass1_episode(src, "ep_002", JobConfig(episode_retries=3))
    assert isinstance(q, Quarantined) and src.calls == 1 and q.file == "action.parquet"


@pytest.mark.parametrize("window", [0, 2])
def test_pass2_retries_an_episode_and_writes_the_same_parts(synthetic_raw, tmp_path, monkeypatch, window):
    cfg = JobConfig(episode_retries=2, shuffle_window=window)
    real = RawSource(synthetic_raw)
    ids = ["ep_000", "ep_001", "ep_002"]
    facts = [pass1_episode(real, e, cfg)[0] for e in ids]
    stats = facts[0].stats["action"].merge(facts[1].stats["action"]).merge(facts[2].stats["action"])
    tok = fit("uniform", stats.to_json(facts[0].action_names), 256, sketch=stats).to_json()
    group = Group(0, "train", tuple(ids))

    monkeypatch.setattr(passes, "source_for", lambda *a: RawSource(synthetic_raw))
    clean = pass2_group(str(synthetic_raw), "raw", group, cfg, tok, str(tmp_path / "a"))
    flaky = Flaky(synthetic_raw, "ep_001", 2, OSError("read timed out"))
    monkeypatch.setattr(passes, "source_for", lambda *a: flaky)
    retried = pass2_group(str(synthetic_raw), "raw", group, cfg, tok, str(tmp_path / "b"))
    assert not retried.quarantined and flaky.calls == 3
    assert [(p.name, p.sha256) for p in retried.parts] == [(p.name, p.sha256) for p in clean.parts]

    flaky = Flaky(synthetic_raw, "ep_001", 9, OSError("read timed out"))
    monkeypatch.setattr(passes, "source_for", lambda *a: flaky)
    gave_up = pass2_group(str(synthetic_raw), "raw", group, cfg, tok, str(tmp_path / "c"))
    assert [q.episode for q in gave_up.quarantined] == ["ep_001"]
    assert "OSError: read timed out" in gave_up.quarantined[0].reason and flaky.calls == 3
    assert sum(p.samples for p in gave_up.parts) == facts[0].steps + facts[2].steps
