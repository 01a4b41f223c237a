"""`--help` of every command: each option says what it does and what it is when not given."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from trajshard.cli import main

COMMANDS = sorted(main.commands)


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")]


def _on_off(option: click.Option, ctx: click.Context) -> bool:
    """A plain flag (--json, --resume): off unless given, so it has no default to show."""
    return option.is_flag and not option.secondary_opts and not option.get_default(ctx, call=False)


@pytest.mark.parametrize("name", ["(group)", *COMMANDS])
def test_every_option_has_help_and_shows_its_default(name):
    command = main if name == "(group)" else main.commands[name]
    group = click.Context(main, info_name="trajshard", **main.context_settings)
    ctx = group if command is main else click.Context(command, info_name=name, parent=group)
    silent, no_default = [], []
    for option in _options(command):
        record = option.get_help_record(ctx)
        if not (option.help or "").strip():
            silent.append(option.opts[0])
        elif not (_on_off(option, ctx) or option.required or "default:" in record[1]):
            no_default.append(option.opts[0])
    assert not silent, f"trajshard {name}: options without help text: {silent}"
    assert not no_default, f"trajshard {name}: options whose --help shows no default: {no_default}"


def test_group_help_lists_the_episodes_command():
    out = CliRunner().invoke(main, ["--help"]).output
    assert "episodes" in out and "inspect" in out


def test_ingest_help_shows_config_defaults():
    out = CliRunner().invoke(main, ["ingest", "--help"], terminal_width=200).output
    for line in (
        "--tokenizer [uniform|quantile|fast]",
        "--format [auto|raw|lerobot|rlds|hdf5|mcap|npz|zarr]",
    ):
        assert line in out
    assert "[default: uniform]" in out and "[default: auto]" in out
    assert "--task-steps INTEGER" in out
