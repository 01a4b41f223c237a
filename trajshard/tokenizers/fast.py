"""FAST: frequency-space action tokens (Pertsch et al., 2025; openpi's FAST tokenizer), trained per dataset.

For one action chunk x [H, D]:

    y      = normalize(x)                                  (bounds_q99 by default, into [-1, 1])
    c      = DCT-II over time, orthonormal:  c = C @ y     (C [H, H]; C @ C.T = I)
    q      = round(c * scale)                              (integers; most high frequencies become 0)
    string = the q in frequency-major order (all dims of frequency 0, then of frequency 1, ...),
             one character per value: chr(BASE + q), |q| <= ceil(sqrt(H) * scale) + 1
    tokens = BPE(string)                                   (Hugging Face `tokenizers`, trained on the
                                                            dataset's own chunks)

Decoding reverses it and checks the shape: a token sequence that does not give exactly H * D values
raises ``FastDecodeError``; it never returns zeros. Rounding bounds the error: every normalized
value is within sqrt(H) * 0.5 / scale of the original (the orthonormal inverse DCT keeps the L2 norm
of the rounding error, at most 0.5 / scale per coefficient).
"""

from __future__ import annotations

import numpy as np

from trajshard.schemas.metadata import TOKENIZER_VERSION
from trajshard.tokenizers.guards import auto_chooser
from trajshard.tokenizers.normalize import Normalizer

BASE = 0x4E00  # CJK block: ordinary, printable, single characters with no special meaning to BPE


def qmax(horizon: int, scale: float) -> int:
    """Largest |q|: |y| <= 1 per value, so a coefficient is at most sqrt(H) (the L2 norm of a column)."""
    return int(np.ceil(np.sqrt(horizon) * scale)) + 1


class FastDecodeError(ValueError):
    """Tokens that do not decode to a chunk of the right shape."""


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C [n, n]: c = C @ y, y = C.T @ c."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (i + 0.5) * k / n)
    c[0] /= np.sqrt(2.0)
    return c


class FastTokenizer:
    chunked = True

    def __init__(self, norm: Normalizer, horizon: int, scale: float, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self.norm, self.horizon, self.scale = norm, int(horizon), float(scale)
        self.tokenizer_json = tokenizer_json
        self.bpe = Tokenizer.from_str(tokenizer_json)
        self.C = dct_matrix(self.horizon)
        self.bins = self.bpe.get_vocab_size()

    @classmethod
    def fit(
        cls,
        action_stats: dict,
        bins: int = 1024,
        normalization: str | dict = "bounds_q99",
        mask=None,
        horizon: int = 10,
        scale: float = 10.0,
        chunks: np.ndarray | None = None,
        sketch=None,
        **_: object,
    ) -> FastTokenizer:
        """Train BPE with ``bins`` tokens on ``chunks`` [N, H, D] (a sample of the dataset's chunks)."""
        from tokenizers import Tokenizer, models, trainers

        if chunks is None or len(chunks) == 0:
            raise ValueError("the FAST tokenizer needs a sample of action chunks to train on")
        auto = None if sketch is None else auto_chooser(sketch, action_stats)
        norm = Normalizer.fit(normalization, action_stats, mask, auto)
        proto = cls.__new__(cls)
        proto.norm, proto.horizon, proto.scale, proto.C = (
            norm,
            int(horizon),
            float(scale),
            dct_matrix(horizon),
        )
        texts = [proto._to_text(c) for c in chunks]
        q = qmax(horizon, scale)
        alphabet = [chr(BASE + v) for v in range(-q, q + 1)]
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=max(bins, len(alphabet) + 1),
            initial_alphabet=alphabet,
            show_progress=False,
            limit_alphabet=len(alphabet),
            min_frequency=2,
        )
        bpe.train_from_iterator(texts, trainer=trainer)
        return cls(norm, horizon, scale, bpe.to_str())

    @property
    def dims(self) -> int:
        return self.norm.dims

    @property
    def token_range(self) -> list[int]:
        return [0, self.bins - 1]

    def _coefficients(self, chunk: np.ndarray) -> np.ndarray:
        c = np.asarray(chunk, dtype=np.float64)
        if c.shape != (self.horizon, self.dims):
            raise ValueError(f"a chunk has shape {list(c.shape)}, expected [{self.horizon}, {self.dims}]")
        q = qmax(self.horizon, self.scale)
        return np.clip(np.round(self.C @ self.norm.normalize(c) * self.scale), -q, q).astype(np.int64)

    def _to_text(self, chunk: np.ndarray) -> str:
        return "".join(chr(BASE + int(v)) for v in self._coefficients(chunk).reshape(-1))

    def encode(self, chunk: np.ndarray) -> np.ndarray:
        """One chunk [H, D] -> int32 token ids [L] (L varies with the chunk)."""
        return np.asarray(self.bpe.encode(self._to_text(chunk)).ids, dtype=np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids [L] -> the chunk [H, D] (float64); raises FastDecodeError when they do not form one."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.bins):
            raise FastDecodeError(f"token ids outside [0, {self.bins - 1}]")
        text = "".join(self.bpe.id_to_token(int(i)) for i in ids)
        values = np.array([ord(ch) - BASE for ch in text], dtype=np.int64)
        if len(values) != self.horizon * self.dims or np.any(np.abs(values) > qmax(self.horizon, self.scale)):
            raise FastDecodeError(
                f"{len(ids)} tokens decode to {len(values)} coefficients, expected "
                f"{self.horizon} x {self.dims} = {self.horizon * self.dims}"
            )
        y = self.C.T @ (values.reshape(self.horizon, self.dims) / self.scale)
        return self.norm.denormalize(y)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.norm.low_high()

    def tolerance(self) -> np.ndarray:
        """Bound on |decode(encode(x)) - x| per dimension, for x inside the bounds (rounding only)."""
        _, half = self.norm._scale()
        return np.sqrt(self.horizon) * 0.5 / self.scale * half

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "trajshard.tokenizer",
            "version": TOKENIZER_VERSION,
            "type": "fast",
            "bins": self.bins,
            "token_range": self.token_range,
            "horizon": self.horizon,
            "scale": self.scale,
            "normalization": self.norm.to_json(),
            "formula": "c = round(DCT_ortho_time(normalize(chunk)) * scale); chars chr(0x4E00 + c) in "
            "frequency-major order; tokens = BPE(chars); decode reverses and requires horizon * dims values",
            "bpe": self.tokenizer_json,
        }

    @classmethod
    def from_json(cls, doc: dict) -> FastTokenizer:
        return cls(
            Normalizer.from_json(doc["normalization"]), int(doc["horizon"]), float(doc["scale"]), doc["bpe"]
        )
