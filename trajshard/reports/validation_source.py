"""``trajshard validate SOURCE``: check a source before a long job, every episode, every problem.

Per episode: the layout (file roles, episode.json), reading every stream and probing every video
(demux only), and alignment onto the default clock. Nothing is decoded or written.
"""

from __future__ import annotations

from trajshard.config import JobConfig
from trajshard.pipelines.align import align
from trajshard.reports.validation import ValidationReport
from trajshard.schemas.attempts import guarded
from trajshard.schemas.episode import EpisodeError
from trajshard.schemas.problems import Problem
from trajshard.sources import SourceSpec, checked_plan


def validate_source(path: str, fmt: str | None = None, cfg: JobConfig | None = None) -> ValidationReport:
    """Every problem of a source, read with the job config's source and align sections (``fmt``, when
    given, overrides its format)."""
    cfg = cfg or JobConfig()
    if fmt is not None:
        cfg = cfg.replace(format=fmt)
    report = ValidationReport()
    _, source = SourceSpec.of(path, cfg.source, cfg.align.fps)
    ids, rejected = checked_plan(source)
    report.problems += rejected
    for eid in ids:
        found = guarded(eid, lambda eid=eid: _episode_problems(source, eid, cfg, report))
        report.problems += [found] if isinstance(found, Problem) else found  # one bad episode never stops it
        report.episodes += 1
    report.notes = list(getattr(source, "notes", []))  # after reading: a reader notes what it met
    return report


def _episode_problems(source, eid: str, cfg: JobConfig, report: ValidationReport) -> list[Problem]:
    problems = source.check(eid)
    if not problems:
        try:
            report.samples += sum(p.steps for p in align(source.load(eid), cfg.align))
        except EpisodeError as exc:
            problems.append(Problem(eid, exc.where, exc.message))
    return problems
