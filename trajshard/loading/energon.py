"""The Megatron-Energon sample type that ``.nv-meta/dataset.yaml`` names (imports megatron.energon).

Energon decodes each field by its extension with its default decoder: images become float tensors
``[3, H, W]`` in ``[0, 1]`` (Energon's ``torchrgb``), ``.npy`` numpy arrays, ``meta.json`` fields
plain values. ``image`` is the first camera in sorted order and ``image_1`` .. ``image_3`` the next
ones; the field map in ``dataset.yaml`` shows which camera each field holds.
"""

from __future__ import annotations

from typing import Any

try:
    from megatron.energon import Sample
    from megatron.energon.edataclass import edataclass
except ImportError as exc:  # dataset.yaml names this module: say what to install, not a bare ImportError
    raise ImportError(
        "trajshard.loading.energon needs megatron-energon: install torch==2.13.0 (the CPU build) first, "
        "then pip install 'trajshard[energon]'"
    ) from exc


@edataclass
class TrajshardSample(Sample):
    """One trajshard step (shard sample v1) as Energon loads it."""

    image: Any
    state: Any
    action: Any
    tokens: Any
    instruction: str
    episode: str
    step: int
    image_1: Any = None
    image_2: Any = None
    image_3: Any = None
    token_ids: Any = None
    action_chunk: Any = None
    action_chunk_mask: Any = None
