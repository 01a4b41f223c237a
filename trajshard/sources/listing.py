"""What a source holds, as ``trajshard describe`` shows it: every key a mapping can name, with its
kind, type, shape, rate and time span, and a mapping template that ingests the source.

Each reader module has ``describe(root: Path, **settings) -> Listing``; ``sources/describe.py``
picks the one of the source's format. A listing reads metadata and headers (and at most a few
episodes), never a whole dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("numeric", "camera", "text", "metadata", "time", "other")


@dataclass(frozen=True)
class KeyInfo:
    """One key a mapping can name: a column, an HDF5 dataset, an array, an MCAP topic (and field)."""

    key: str
    kind: str  # one of KINDS
    dtype: str = ""  # numpy dtype, message type, codec
    shape: tuple[int, ...] = ()  # per step (numeric: (D,); camera: (H, W, 3))
    rate_hz: float | None = None
    span_s: tuple[float, float] | None = None  # first and last time, seconds
    count: int | None = None  # rows, messages or frames (in the episode looked at)
    names: tuple[str, ...] = ()  # dimension names the source carries
    detail: str = ""  # anything else worth a word: codec, file, size on disk, a sample of the text

    def to_json(self) -> dict:
        out = {
            "key": self.key,
            "kind": self.kind,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "rate_hz": self.rate_hz,
            "span_s": list(self.span_s) if self.span_s else None,
            "count": self.count,
            "names": list(self.names),
            "detail": self.detail,
        }
        return {k: v for k, v in out.items() if v not in (None, "", [])}


@dataclass(frozen=True)
class Listing:
    """A source described: its format, how many episodes, the keys of one episode looked at (with
    the episode's id), a mapping template, and notes (quirks, what the template could not decide)."""

    format: str
    episodes: int
    example: str  # the episode whose keys are listed
    keys: tuple[KeyInfo, ...]
    mapping: dict = field(default_factory=dict)  # the [mapping] table that ingests the source
    settings: dict = field(default_factory=dict)  # other job-config keys the source needs (source_fps)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "episodes": self.episodes,
            "example": self.example,
            "keys": [k.to_json() for k in self.keys],
            "mapping": self.mapping,
            "settings": self.settings,
            "notes": list(self.notes),
        }
