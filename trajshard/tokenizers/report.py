"""The round-trip report: how far decode(encode(action)) lands from the action, per dimension.

Accumulated per pass-2 task and merged on the driver into ``meta/roundtrip.json``: count, RMSE and
max error in action units and normalized (error divided by half the tokenizer's bounds range), the
clipping rate (share of values outside the bounds, which land in the edge bins), tokens per step or
per chunk (mean, p99; for FAST against the H x D of naive binning), and decode failures. The decoded
actions are measured rounded to float32, the dtype of ``action.npy``: the errors a float32 consumer sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trajshard.tokenizers.chunks import action_chunks

ROUNDTRIP_VERSION = 2  # 2: "guards" (a version-1 reader ignores the key)


@dataclass
class RoundTrip:
    count: int
    sq: np.ndarray
    max_abs: np.ndarray
    sq_norm: np.ndarray
    max_norm: np.ndarray
    clipped: np.ndarray
    lengths: dict[int, int] = field(default_factory=dict)  # tokens per unit (step or chunk) -> count
    decode_failures: int = 0
    token_counts: np.ndarray | None = None  # [D, token values], per-dimension tokenizers only

    @classmethod
    def empty(cls, dims: int) -> RoundTrip:
        z = np.zeros(dims)
        return cls(0, z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(dims, dtype=np.int64))

    @classmethod
    def measure(
        cls, actions: np.ndarray, tokenizer, horizon: int = 1, start: int = 0, stop: int | None = None
    ) -> RoundTrip:
        """Round trip of each step's action, or of each step's chunk for a chunked tokenizer; of steps
        ``[start, stop)`` only when given (a chunk still reaches past ``stop``)."""
        x = np.asarray(actions, dtype=np.float64)
        rows = slice(start, len(x) if stop is None else stop)
        lengths: dict[int, int] = {}
        failures = 0
        counts = None
        if getattr(tokenizer, "chunked", False):
            chunks = action_chunks(x, horizon)[0][rows]
            decoded = np.empty_like(chunks)
            for i, c in enumerate(chunks):
                ids = tokenizer.encode(c)
                lengths[len(ids)] = lengths.get(len(ids), 0) + 1
                try:
                    decoded[i] = tokenizer.decode(ids).astype(np.float32)
                except ValueError:
                    failures += 1
                    decoded[i] = np.nan
            x, dec = chunks.reshape(-1, x.shape[-1]), decoded.reshape(-1, x.shape[-1])
        else:
            x = x[rows]
            lengths[x.shape[-1]] = len(x)
            tokens = tokenizer.encode(x)
            dec = tokenizer.decode(tokens).astype(np.float32).astype(np.float64)
            lo_t, hi_t = tokenizer.token_range
            counts = np.zeros((x.shape[-1], hi_t - lo_t + 1), dtype=np.int64)
            np.add.at(counts, (np.broadcast_to(np.arange(x.shape[-1]), tokens.shape), tokens - lo_t), 1)
        lo, hi = tokenizer.bounds()
        err = np.abs(dec - x)
        err = np.where(np.isfinite(err), err, 0.0)
        half = np.where(hi > lo, (hi - lo) / 2, 1.0)
        norm = err / half
        clipped = ((x < lo) | (x > hi)).sum(0)
        return cls(
            len(x),
            (err**2).sum(0),
            err.max(0, initial=0),
            (norm**2).sum(0),
            norm.max(0, initial=0),
            clipped,
            lengths,
            failures,
            counts,
        )

    def merge(self, o: RoundTrip) -> RoundTrip:
        lengths = dict(self.lengths)
        for k, v in o.lengths.items():
            lengths[k] = lengths.get(k, 0) + v
        return RoundTrip(
            self.count + o.count,
            self.sq + o.sq,
            np.maximum(self.max_abs, o.max_abs),
            self.sq_norm + o.sq_norm,
            np.maximum(self.max_norm, o.max_norm),
            self.clipped + o.clipped,
            lengths,
            self.decode_failures + o.decode_failures,
            _add(self.token_counts, o.token_counts),
        )

    def to_state(self) -> dict[str, object]:
        """Every field, exactly (JSON floats round-trip float64), for a resumable job's records."""
        return {
            "count": int(self.count),
            "sq": self.sq.tolist(),
            "max_abs": self.max_abs.tolist(),
            "sq_norm": self.sq_norm.tolist(),
            "max_norm": self.max_norm.tolist(),
            "clipped": self.clipped.tolist(),
            "lengths": [[int(k), int(v)] for k, v in sorted(self.lengths.items())],
            "decode_failures": int(self.decode_failures),
            "token_counts": None if self.token_counts is None else self.token_counts.tolist(),
        }

    @classmethod
    def from_state(cls, d: dict) -> RoundTrip:
        return cls(
            int(d["count"]),
            np.asarray(d["sq"], dtype=np.float64),
            np.asarray(d["max_abs"], dtype=np.float64),
            np.asarray(d["sq_norm"], dtype=np.float64),
            np.asarray(d["max_norm"], dtype=np.float64),
            np.asarray(d["clipped"], dtype=np.int64),
            {int(k): int(v) for k, v in d["lengths"]},
            int(d["decode_failures"]),
            None if d["token_counts"] is None else np.asarray(d["token_counts"], dtype=np.int64),
        )

    def token_summary(self) -> dict[str, float]:
        if not self.lengths:
            return {}
        ks = np.array(sorted(self.lengths))
        counts = np.array([self.lengths[k] for k in ks])
        cum = np.cumsum(counts) / counts.sum()
        return {
            "mean_tokens": float((ks * counts).sum() / counts.sum()),
            "p99_tokens": float(ks[min(np.searchsorted(cum, 0.99), len(ks) - 1)]),
            "units": int(counts.sum()),
        }

    def to_json(self, names: list[str] | None = None, guards: list[dict] = ()) -> dict[str, object]:
        """meta/roundtrip.json; ``guards``: the tokenizer's guard findings (tokenizers/guards.py), beside
        the errors they explain."""
        n = max(self.count, 1)
        dims = [
            {
                "dim": d,
                "name": names[d] if names and d < len(names) else "",
                "rmse": float(np.sqrt(self.sq[d] / n)),
                "max_error": float(self.max_abs[d]),
                "rmse_normalized": float(np.sqrt(self.sq_norm[d] / n)),
                "max_error_normalized": float(self.max_norm[d]),
                "clip_rate": float(self.clipped[d] / n),
            }
            for d in range(len(self.sq))
        ]
        return {
            "schema": "trajshard.roundtrip",
            "version": ROUNDTRIP_VERSION,
            "count": int(self.count),
            "dims": dims,
            "tokens": self.token_summary(),
            "decode_failures": int(self.decode_failures),
            "guards": list(guards),
        }


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return b if a is None else a if b is None else a + b
