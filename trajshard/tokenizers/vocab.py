"""Bin -> VLM token id: where the action tokens live in a language model's vocabulary.

Specs (``--vocab``):

- ``openvla:V``  the last ids of a vocabulary of size V, reversed: ``id = V - 1 - (token - token_lo)``;
  with the uniform tokenizer's openvla mode (tokens 1..256) that is OpenVLA's ``id = V - token``;
- ``offset:K``   ``id = K + token - token_lo``;
- ``list:FILE``  a JSON list of ids, one per token value (``ids[token - token_lo]``).

With ``vocab_file`` (a Hugging Face ``tokenizer.json``), every mapped id is checked: it must exist,
must not be a special token, and must not decode to a control character (openvla issue 226).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np


class VocabMap:
    def __init__(self, spec: str, ids: np.ndarray, token_lo: int) -> None:
        self.spec = spec
        self.ids = np.asarray(ids, dtype=np.int64)
        self.token_lo = token_lo

    @classmethod
    def build(cls, spec: str, token_range: list[int]) -> VocabMap:
        lo, hi = token_range
        tokens = np.arange(lo, hi + 1)
        kind, _, arg = spec.partition(":")
        if kind == "openvla":
            ids = int(arg) - 1 - (tokens - lo)
        elif kind == "offset":
            ids = int(arg) + tokens - lo
        elif kind == "list":
            ids = np.asarray(json.loads(Path(arg).read_text()), dtype=np.int64)
            if len(ids) != len(tokens):
                raise ValueError(f"--vocab {spec}: {len(ids)} ids for {len(tokens)} token values")
        else:
            raise ValueError(f"--vocab must be openvla:V, offset:K or list:FILE, got {spec!r}")
        if np.any(ids < 0):
            raise ValueError(f"--vocab {spec}: maps some tokens to negative ids")
        if len(set(ids.tolist())) != len(ids):
            raise ValueError(f"--vocab {spec}: two token values map to the same id")
        return cls(spec, ids, lo)

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        return self.ids[np.asarray(tokens, dtype=np.int64) - self.token_lo]

    def check_against(self, vocab_file: str) -> None:
        """Refuse ids outside the vocabulary, special tokens, and ids that decode to control characters."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(vocab_file)
        size = tok.get_vocab_size(with_added_tokens=True)
        special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
        bad = []
        for i in self.ids.tolist():
            piece = tok.id_to_token(i) if i < size else None
            text = tok.decode([i], skip_special_tokens=False) if piece is not None else ""
            if piece is None:
                bad.append(f"{i} (outside the vocabulary of {size})")
            elif piece in special:
                bad.append(f"{i} (special token {piece!r})")
            elif any(unicodedata.category(c) == "Cc" for c in text):
                bad.append(f"{i} (decodes to a control character {text!r})")
        if bad:
            raise ValueError(f"--vocab {self.spec}: {len(bad)} ids unusable in {vocab_file}: {bad[:5]}")

    def to_json(self) -> dict[str, object]:
        return {"spec": self.spec, "token_lo": self.token_lo, "ids": [int(v) for v in self.ids]}
