"""The README's commands run as written: every ```bash block's trajshard command and every ```python
snippet, in order, from a directory laid out as a checkout after `make demo` (so `demo_out/raw`).

The trajshard commands run in this process through click (the same `trajshard.cli.main` that
`.venv/bin/trajshard` calls), which saves an interpreter start per command. Two kinds of lines are
not run, each for a stated reason (SKIPPED); any other line the test does not know fails it.
"""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from trajshard.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(bash|sh|python)\n(.*?)^```", re.M | re.S)
CLI = ".venv/bin/trajshard"
SKIPPED = {
    # `make demo` / `make test` create .venv and pip-install into it (network, minutes). The test stands
    # in for `make demo` with what it leaves behind for the tour: demo_out/raw, recorded by the same
    # code (`trajshard demo`'s recorder, sources/synthetic.py), 6 episodes of 2 s instead of 8 of 4 s
    # to keep the test short (the README inspects ep_005, the sixth).
    "make ": "sets up .venv: pip installs, not a trajshard command",
    # real recordings are not part of a clone; tests/test_lerobot.py, test_rlds.py and test_hdf5.py run
    # these readers on them when ../shared/data is present
    "../shared/data": "real data outside the checkout",
}


def readme_steps() -> list[tuple[str, str]]:
    """(kind, text) in README order: ("bash", one command line) or ("python", a whole snippet)."""
    steps = []
    for lang, body in BLOCK.findall(README.read_text()):
        if lang == "python":
            steps.append(("python", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if shlex.split(line, comments=True):
                steps.append(("bash", line))
    return steps


def _skip_reason(line: str) -> str | None:
    return next((why for marker, why in SKIPPED.items() if marker in line), None)


def test_the_readme_has_the_tour_to_run():
    steps = readme_steps()
    commands = [t for kind, t in steps if kind == "bash" and _skip_reason(t) is None]
    assert len(commands) >= 9 and sum(kind == "python" for kind, _ in steps) >= 2
    assert all(c.startswith(CLI + " ") for c in commands), [c for c in commands if not c.startswith(CLI)]


def test_readme_commands_run_as_written(tmp_path, monkeypatch):
    from trajshard.sources.synthetic import write_synthetic_dataset

    monkeypatch.chdir(tmp_path)
    write_synthetic_dataset(Path("demo_out/raw"), n_episodes=6, seconds=2.0)  # `make demo`'s, shorter
    ran = 0
    for kind, text in readme_steps():
        if kind == "python":
            with (
                warnings.catch_warnings()
            ):  # webdataset's warnings (shardshuffle unset, ...) fail the snippet
                warnings.filterwarnings("error", module="webdataset")
                exec(compile(text, f"{README.name} python snippet", "exec"), {"__name__": "readme"})
            ran += 1
            continue
        if _skip_reason(text) is not None:
            continue
        args = shlex.split(text, comments=True)
        assert args[0] == CLI, f"README runs something the test does not know: {text}"
        result = CliRunner().invoke(main, args[1:])
        assert result.exit_code == 0, f"README command failed ({result.exit_code}): {text}\n{result.output}"
        ran += 1
    assert ran >= 11
    for made in ("out/meta/info.json", "hist.png", "ep_005.png", "out/report.html"):
        assert Path(made).is_file(), made


@pytest.mark.parametrize("line", ["make demo", ".venv/bin/trajshard ingest ../shared/data/x y"])
def test_only_the_stated_lines_are_skipped(line):
    assert _skip_reason(line) is not None
    assert _skip_reason(".venv/bin/trajshard validate out") is None
