"""The package's layers, bottom first: a module imports only from its own layer and the ones below.

``tests/test_layers.py`` checks every import (function-level ones included) against this order, so
no layer reaches up and no import cycle can form between layers. ``cli`` may import anything.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("trajshard", "trajshard.io", "trajshard.storage", "trajshard.layers")),
    ("schemas", ("trajshard.schemas",)),
    (
        "components",  # readers, tokenizers and the pure stages, each with its config section
        (
            "trajshard.sources",
            "trajshard.tokenizers",
            "trajshard.pipelines",  # the package itself: a docstring
            "trajshard.pipelines.actions",
            "trajshard.pipelines.align",
            "trajshard.pipelines.embodiment",
            "trajshard.pipelines.filters",
            "trajshard.pipelines.frames",
            "trajshard.pipelines.plan",
            "trajshard.pipelines.progress",
            "trajshard.pipelines.resample",
            "trajshard.pipelines.samples",
            "trajshard.pipelines.shards",
            "trajshard.pipelines.stats",
            "trajshard.pipelines.tarstream",
        ),
    ),
    ("config", ("trajshard.config",)),
    ("reports", ("trajshard.reports", "trajshard.loading", "trajshard.loader")),
    (
        "job",  # the episode path, the tasks and the Ray-free driver
        (
            "trajshard.pipelines.checkpoint",
            "trajshard.pipelines.commit",
            "trajshard.pipelines.episode",
            "trajshard.pipelines.facts",
            "trajshard.pipelines.handoff",
            "trajshard.pipelines.isolate",
            "trajshard.pipelines.job",
            "trajshard.pipelines.merge",
            "trajshard.pipelines.mix",
            "trajshard.pipelines.tasks",
        ),
    ),
    ("ray", ("trajshard.pipelines.ingest", "trajshard.pipelines.leftovers")),
    ("cli", ("trajshard.cli", "trajshard.__main__")),
)


def layer_of(module: str) -> int:
    """The index of the layer a module belongs to: the longest declared name it is or lies under (the
    root package only as itself, so a new module must be given a layer)."""
    best, index = -1, -1
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            under = module.startswith(name + ".") and name != "trajshard"
            if (module == name or under) and len(name) > best:
                best, index = len(name), i
    if index < 0:
        raise KeyError(f"{module} is in no layer of trajshard/layers.py")
    return index
