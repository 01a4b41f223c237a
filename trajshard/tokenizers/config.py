"""The ``tokenizer`` section of a job config, and the fit it drives."""

from __future__ import annotations

from dataclasses import dataclass

from trajshard.tokenizers.normalize import SPECS as NORMALIZATIONS
from trajshard.tokenizers.normalize import spec_problems
from trajshard.tokenizers.uniform import MODES as UNIFORM_MODES

KINDS = ("uniform", "quantile", "fast")
VOCAB_KINDS = ("openvla", "offset", "list")
MAX_BINS = 65536  # bins (token values) a tokenizer may have; readers bound arrays by it


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer discretizes actions, over how many bins, and where its tokens land in a VLM's
    vocabulary; ``horizon`` > 1 makes every sample carry an action chunk (FAST tokenizes chunks)."""

    kind: str = "uniform"
    bins: int = 256
    uniform_mode: str = "openvla"
    fast_scale: float = 10.0
    fast_fit_episodes: int = 256
    normalization: str | dict = "bounds_q99"  # one mode, "auto", or {default = mode, dims = {1 = mode}}
    normalization_mask: tuple[bool, ...] = ()
    vocab: str | None = None
    vocab_file: str | None = None
    horizon: int = 1

    CHOICES = {"kind": KINDS, "uniform_mode": UNIFORM_MODES, "normalization": NORMALIZATIONS}

    @property
    def chunked(self) -> bool:
        return self.kind == "fast"

    def problems(self) -> list[str]:
        out = [
            f"{'tokenizer' if name == 'kind' else name} must be one of {allowed}, got {getattr(self, name)!r}"
            for name, allowed in self.CHOICES.items()
            if name != "normalization" and getattr(self, name) not in allowed
        ]
        out += spec_problems(self.normalization)
        if self.vocab is not None and self.vocab.partition(":")[0] not in VOCAB_KINDS:
            out.append(f"vocab must be openvla:V, offset:K or list:FILE, got {self.vocab!r}")
        if self.kind == "fast" and self.horizon < 2:
            out.append("the fast tokenizer works on action chunks: set horizon to 2 or more")
        if not self.fast_scale > 0 or self.fast_fit_episodes < 1:
            out.append("fast_scale must be positive and fast_fit_episodes at least 1")
        if self.vocab_file is not None and self.vocab is None:
            out.append("vocab_file is given without vocab")
        if not 3 <= self.bins <= MAX_BINS:
            out.append(f"bins must be in [3, {MAX_BINS}], got {self.bins}")
        if self.horizon < 1:
            out.append(f"horizon must be at least 1, got {self.horizon}")
        return out
