"""``trajshard doctor PATH``: data-quality findings of a source or an output (docs/doctor.md).

Findings are grouped: the same kind of finding in many episodes is one line with a count and a few
examples. ``meta/quality.json`` (written by ingest) is :meth:`DoctorReport.to_json`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trajshard.config import JobConfig
from trajshard.reports.doctor.checks import CHECKS, Finding
from trajshard.reports.doctor.output import output_views
from trajshard.reports.doctor.source import source_views
from trajshard.reports.doctor.views import SEVERITIES, DatasetSummary, EpisodeView, Facts, Limits
from trajshard.sources import SourceSpec, is_trajshard_output
from trajshard.storage import Store, is_remote

QUALITY_VERSION = 1
EXAMPLES = 3


@dataclass
class Group:
    """Every finding of one kind: how many, out of how many looked at, and the first few."""

    code: str
    severity: str
    what: str
    count: int = 0
    subject: str = ""
    of: int | None = None
    examples: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        sampled = "sampled " if CHECKS[self.code].scope == "frames" else ""
        base = f" in {self.count} of {self.of} {sampled}episodes" if self.of else ""
        shown = [f"{w}: {d}" if w and d else w or d for w, d in self.examples if w or d]
        more = ", ..." if self.count > len(self.examples) and self.examples and self.examples[0][0] else ""
        sep = "; " if any(d for _, d in self.examples) else ", "
        eg = f" ({sep.join(shown)}{more})" if shown else ""
        return f"{self.severity:<7} {self.code:<23} {self.what}{base}{eg}"

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "scope": CHECKS[self.code].scope,
            "message": self.what,
            "count": self.count,
            "of": self.of,
            "examples": [{"where": w, "detail": d} for w, d in self.examples],
        }


@dataclass
class DoctorReport:
    kind: str  # "source" or "dataset"
    path: str
    episodes: int  # episodes (parts, in an output) the checks saw
    planned: int  # episodes in the source
    sampled: dict[str, int]  # camera -> episodes whose frames were looked at
    groups: list[Group]

    def counts(self) -> dict[str, int]:
        return {s: sum(g.severity == s for g in self.groups) for s in SEVERITIES}

    @property
    def ok(self) -> bool:
        return not any(g.severity == "error" for g in self.groups)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "trajshard.quality",
            "version": QUALITY_VERSION,
            "kind": self.kind,
            "checked": {"episodes": self.episodes, "planned": self.planned, "frames_of": self.sampled},
            "counts": self.counts(),
            "checks": sorted(CHECKS),
            "findings": [g.to_json() for g in self.groups],
        }

    def render(self) -> str:
        c = self.counts()
        sampled = ", ".join(f"{k} {v}" for k, v in sorted(self.sampled.items())) or "no camera"
        lines = [
            f"doctor: {self.kind} {self.path}: {self.episodes} of {self.planned} episodes checked; frames "
            f"looked at (episodes per camera): {sampled}",
            *[g.line() for g in self.groups],
            f"errors {c['error']}, warnings {c['warning']}, notes {c['info']} ({len(CHECKS)} checks)",
        ]
        return "\n".join(lines)


def diagnose(
    views: Iterable[EpisodeView], facts: Facts, limits: Limits, kind: str, path: str
) -> DoctorReport:
    """Run every check: each episode's as it comes (then it is dropped), the dataset's at the end."""
    summary, groups = DatasetSummary(), {}
    gripper_dim = int(facts.gripper["dim"]) if facts.gripper else None
    for view in views:
        summary.add(view, gripper_dim)
        for chk in CHECKS.values():
            if chk.scope == "episode" or (chk.scope == "frames" and view.sampled):
                for f in chk.run(view, facts, limits):
                    _add(groups, f)
            elif chk.collect is not None and (record := chk.collect(view, summary, limits)) is not None:
                summary.collected.setdefault(chk.code, []).append(record)
    for chk in CHECKS.values():
        if chk.scope == "dataset":
            for f in chk.run(summary, facts, limits):
                _add(groups, f)
    for g in groups.values():
        scope = CHECKS[g.code].scope
        if g.code == "episode.unusable":
            g.of = facts.episodes_planned
        elif scope == "frames":
            g.of = summary.sampled[g.subject]
        elif scope == "episode" or g.examples[0][0]:  # a dataset check's findings about episodes
            g.of = summary.episodes
    order = {s: i for i, s in enumerate(SEVERITIES)}
    ranked = sorted(groups.values(), key=lambda g: (order[g.severity], g.code, g.what))
    return DoctorReport(kind, path, summary.episodes, facts.episodes_planned, dict(summary.sampled), ranked)


def _add(groups: dict, f: Finding) -> None:
    key = (f.code, f.what, f.subject)
    g = groups.get(key)
    if g is None:
        g = groups[key] = Group(f.code, CHECKS[f.code].severity, f.what, subject=f.subject)
    g.count += 1
    if len(g.examples) < EXAMPLES:
        g.examples.append((f.where, f.detail))


def doctor_source(path: str, cfg: JobConfig | None = None, limits: Limits | None = None) -> DoctorReport:
    limits = limits or Limits()
    facts, views = source_views(path, cfg or JobConfig(), limits)
    return diagnose(views, facts, limits, "source", path)


def doctor_output(
    location: str, info: dict | None = None, limits: Limits | None = None, source: SourceSpec | None = None
) -> DoctorReport:
    """The findings of an output. ``info``: its info.json when not written yet (inside ingest);
    ``source``: the source it came from, for what only the source knows (its notes, its task list)."""
    limits = limits or Limits()
    facts, views = output_views(Store(location), info, limits, source)
    return diagnose(views, facts, limits, "dataset", location)


def doctor(path: str, cfg: JobConfig | None = None, limits: Limits | None = None) -> DoctorReport:
    """An output's findings when PATH is one, else the source's."""
    if is_trajshard_output(path) or (is_remote(path) and Store(path).exists("meta/info.json")):
        return doctor_output(path, limits=limits)
    return doctor_source(path, cfg, limits)
