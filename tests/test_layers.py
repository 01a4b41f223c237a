"""Every import in the package goes to the importer's layer or below (trajshard/layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from trajshard.layers import LAYERS, layer_of

PACKAGE = Path(__file__).resolve().parents[1] / "trajshard"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every trajshard import, at any depth; ``from pkg import sub`` counts as
    ``pkg.sub`` when ``sub`` is a module."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "trajshard"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trajshard":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    PACKAGE.parent / Path(*sub.split("."))
                ).is_dir()
                out.append((node.lineno, sub if is_module else node.module))
    return out


def violations(modules: dict[str, ast.AST]) -> list[str]:
    found = []
    for name, tree in modules.items():
        mine = layer_of(name)
        for line, target in imported(tree):
            theirs = layer_of(target)
            if theirs > mine:
                found.append(
                    f"{name}:{line} imports {target} ({LAYERS[theirs][0]}) above its layer {LAYERS[mine][0]}"
                )
    return found


def package_modules() -> dict[str, ast.AST]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    for name in package_modules():
        layer_of(name)


def test_no_module_imports_from_a_layer_above_it():
    assert violations(package_modules()) == []


@pytest.mark.parametrize(
    "name, source",
    [
        ("trajshard.io", "def f():\n    from trajshard.pipelines.job import run_job\n"),
        ("trajshard.reports.summary", "from trajshard.pipelines import handoff\n"),
        ("trajshard.pipelines.align", "import trajshard.config\n"),
    ],
)
def test_an_upward_import_is_found_at_any_depth(name, source):
    assert len(violations({name: ast.parse(source)})) == 1
