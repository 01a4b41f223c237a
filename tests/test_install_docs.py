"""What the docs and messages tell a user to install: the pinned torch before the extras that need it,
and the extra (not a bare package list) that `trajshard index` uses."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TORCH_EXTRAS = re.compile(r"pip install[^\n]*trajshard\[(torch|energon)\]")


def _paragraphs(path: Path) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", path.read_text()) if p.strip()]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_install_of_a_torch_extra_pins_torch_first(doc):
    """A paragraph that installs an extra needing torch also says to install torch==2.13.0 first:
    unpinned, pip resolves a CUDA torch and GBs of nvidia-* wheels."""
    unpinned = [p for p in _paragraphs(doc) if TORCH_EXTRAS.search(p) and "torch==2.13.0" not in p]
    assert not unpinned, f"{doc.name}: installs a torch extra without torch==2.13.0 first:\n{unpinned[0]}"


def test_wids_is_in_the_extra_that_trajshard_index_uses():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", req)[0] for req in extras["energon"]}
    assert {"wids", "megatron-energon"} <= names


def test_the_energon_error_names_the_extra(ingested, tmp_path, monkeypatch):
    """Without megatron-energon (an import that fails), the index error says which extra to install."""
    import shutil

    from trajshard.loading.index import write_indexes
    from trajshard.loading.source import LoaderError

    out = tmp_path / "out"
    shutil.copytree(ingested, out)
    monkeypatch.setitem(sys.modules, "megatron.energon.flavors.webdataset.base_webdataset", None)
    with pytest.raises(LoaderError) as exc:
        write_indexes(out, wids=False, energon=True, verify=False)
    assert "pip install 'trajshard[energon]'" in str(exc.value)
    assert "torch==2.13.0" in str(exc.value)
