"""The ``trajshard`` command line: describe, ingest, validate, doctor, stats, histogram, inspect, episodes,
report, demo, index, mix (see docs/cli.md).

Commands import their heavy modules when they run, so ``trajshard --help`` stays fast. Every option has
help text and its default in ``--help``: the group shows defaults, and an option whose default is None
says what absent means with ``show_default="..."`` (tests/test_cli_help.py checks both).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from trajshard import __version__
from trajshard.config import FLAGS, SECTIONS, load_config
from trajshard.schemas.problems import format_problems
from trajshard.sources import FORMATS


@click.group(context_settings={"show_default": True})
@click.version_option(__version__, prog_name="trajshard")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log at INFO; ingest logs a line per finished task (docs/cli.md)."
)
def main(verbose: bool) -> None:
    """Raw robot recordings to aligned, tokenized WebDataset shards for VLA training."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


_TYPES = {"float": float, "int": int, "str": str, "float | None": float, "int | None": int, "str | None": str}


def _flag(name: str, help: str, absent: str | None = None, **kwargs) -> Callable:
    """A click option for a config flag: its type, choices and default come from the section that
    owns it (config.FLAGS); absent on the command line (None), the TOML config or the default holds.
    ``absent`` says what a default of None means (shown as the default)."""
    section, field_name = FLAGS[name]
    owner = {f.name: f for f in dataclasses.fields(SECTIONS[section])}[field_name]
    choices = getattr(SECTIONS[section], "CHOICES", {}).get(field_name)
    kind = click.Choice(choices) if choices else kwargs.pop("type", None) or _TYPES[owner.type]
    default = owner.default
    shown = absent if default is None or default is dataclasses.MISSING else str(default)
    opt = "--" + name.replace("_", "-")
    return click.option(
        opt, name, cls=_ConfigOption, type=kind, default=None, help=help, show_default=shown, **kwargs
    )


class _ConfigOption(click.Option):
    """A config flag: None when not given (so the TOML config or the section's default holds); its help
    shows the section's default as a value, ``[default: 224]``, not click's ``[default: (224)]``."""

    def get_help_extra(self, ctx: click.Context):  # click >= 8.2; before, the default shows in brackets
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):
            extra["default"] = self.show_default
        return extra


class _RequiredWithHint(click.Option):
    """A required option whose "Missing option" error also says where its values come from."""

    def __init__(self, *args, hint: str, **kwargs) -> None:
        super().__init__(*args, required=True, **kwargs)
        self.hint = hint

    def process_value(self, ctx: click.Context, value: object) -> object:
        try:
            return super().process_value(ctx, value)
        except click.MissingParameter as exc:
            exc.message = self.hint
            raise


_mapping_option = click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    show_default="the config's mapping, else none",
    help="Source mapping file (TOML or JSON): which keys make state, action, cameras, instruction.",
)


@main.command()
@click.argument("source", type=click.Path(exists=True))
@_flag("format", "Source format.")
@_flag(
    "source_fps",
    "Step rate of step-indexed sources (RLDS, HDF5), for their rates and spans.",
    absent="none: their rates are not shown",
)
@click.option(
    "--write-mapping",
    "mapping_out",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="none: only printed",
    help="Write the mapping template (TOML) to FILE, for ingest --mapping FILE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def describe(source: str, mapping_out: str | None, as_json: bool, **flags) -> None:
    """What SOURCE holds (keys, cameras, rates, instruction candidates) and a mapping template.

    The first command to run on an unknown dataset. Exit 0 listed, 1 it cannot be described."""
    from trajshard.sources.describe import describe_source, listing_json, render_listing, write_mapping

    try:
        listing = describe_source(source, flags["format"] or "auto", source_fps=flags["source_fps"])
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a source too broken to list: say so, no traceback
        raise click.ClickException(f"cannot describe {source}: {type(exc).__name__}: {exc}") from exc
    click.echo(listing_json(listing, source) if as_json else render_listing(listing, source), nl=False)
    if mapping_out:
        write_mapping(listing, mapping_out, source)
        click.echo(
            f"wrote {mapping_out}: edit it, then trajshard ingest {source} OUT --mapping {mapping_out}",
            err=True,
        )


@main.command()
@click.argument("source")
@click.argument("out")
@_flag("format", "Source format.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    show_default="none",
    help="TOML job config.",
)
@_mapping_option
@_flag("fps", "Target clock rate in Hz.")
@_flag("source_fps", "Step rate of step-indexed sources (RLDS, HDF5).", absent="--fps")
@_flag("image_size", "Square image side in pixels.")
@_flag("resize_mode", "How a frame becomes square: stretch (OpenVLA, Octo), pad, center-crop.")
@_flag("jpeg_quality", "JPEG quality 1-100.")
@_flag("jpeg_subsampling", "JPEG chroma; 4:2:0 is smaller and keeps less colour detail (docs/cli.md).")
@_flag("tokenizer", "Action tokenizer.")
@_flag("uniform_mode", "Uniform bin layout.")
@_flag("normalization", "How actions are scaled before binning.")
@_flag("vocab", "Token ids in a VLM vocabulary: openvla:V, offset:K, list:FILE.", absent="none")
@_flag("vocab_file", "HF tokenizer.json to check the ids against.", absent="none")
@_flag("bins", "Tokenizer bins.")
@_flag("horizon", "Action chunk length (1: no chunk).")
@_flag("shard_size", "Shard size cap, e.g. 1GB, 256MB.")
@_flag("seed", "Seed of the val split and the shuffle.")
@_flag("split", "Name of the training split.")
@_flag("val_fraction", "Share of episodes, by a seeded hash of the id, in 'val'.")
@_flag("shuffle_window", "Episodes whose samples are interleaved across their shards (0: in order).")
@_flag(
    "task_steps",
    "Steps per pass-2 task; each task writes its own shards, so larger: fewer, fuller shards.",
    absent="about one shard, at least 32, small enough for 64 tasks",
)
@_flag("workers", "Tasks run at once; 0: serially in this process, no Ray.", absent="every CPU Ray has")
@_flag("address", "Ray cluster address (auto, ray://...).", absent="RAY_ADDRESS, else an embedded local Ray")
@_flag("clock", "fixed (ticks at --fps) or camera:<name> (one tick per frame).")
@_flag("video_policy", "Frame of a tick: nearest, or causal (the latest at or before it).")
@_flag("video_tolerance", "Seconds a frame may be from its tick.", absent="a frame interval")
@_flag("on_missing_frame", "A tick without a frame: drop the tick, or fail the episode.")
@_flag("action_policy", "Action at a tick: hold (the command in force) or interpolate.")
@_flag("derive_action", "Without an action stream: the next state (absolute) or its difference (delta).")
@_flag("max_gap", "Longest gap in a stream, seconds.")
@_flag("on_gap", "A longer gap: split the episode into parts, or quarantine it.")
@click.option("--camera", "cameras", multiple=True, show_default="all", help="Camera to keep (repeatable).")
@click.option(
    "--keep-episode",
    "keep_episodes",
    multiple=True,
    show_default="all",
    help="Episode id or glob to keep (repeatable; ids: trajshard episodes SOURCE).",
)
@click.option(
    "--exclude-episode",
    "exclude_episodes",
    multiple=True,
    show_default="none",
    help="Episode id or glob to leave out (repeatable).",
)
@click.option("--success-only", is_flag=True, default=None, help="Keep only episodes marked successful.")
@_flag("min_steps", "Leave out episodes with fewer aligned steps (after trims).", absent="no minimum")
@_flag("max_steps", "Leave out episodes with more aligned steps (after trims).", absent="no maximum")
@_flag(
    "trim_idle",
    "Trim leading/trailing steps where no state dim moves more than this (state units).",
    absent="no trim",
)
@click.option(
    "--no-images",
    "no_images",
    is_flag=True,
    default=None,
    help="Accept an output without any camera (state/action-only data); without it such a job fails.",
)
@_flag("task_cpus", "Ray CPUs per task.")
@_flag("task_memory", "Ray memory reserved per task, e.g. 4GB.", absent="none")
@_flag("episode_retries", "Retries after an unexpected error in an episode.")
@_flag("episode_timeout", "Seconds one episode may take in a task before it is quarantined.")
@_flag(
    "max_quarantine_fraction",
    "Abort when more of the input than this is quarantined (1: never).",
    type=click.FloatRange(0, 1),
)
@click.option(
    "--resume", is_flag=True, help="Finish the interrupted job in OUT, keeping its finished shards."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    show_default="on a terminal",
    help="Progress bars; without them, a log line every 10 s.",
)
def ingest(
    source, out, config_path, progress, cameras, keep_episodes, exclude_episodes, resume, **flags
) -> None:
    """Ingest SOURCE into OUT (shards + meta).

    OUT, and a raw-layout SOURCE, may be object-store URIs (s3://bucket/prefix): docs/operations.md."""
    from trajshard.io import out_problem
    from trajshard.pipelines.ingest import IngestError, run_ingest
    from trajshard.pipelines.leftovers import end_leftovers
    from trajshard.pipelines.shards import ShardWriteError
    from trajshard.storage import StorageError

    if (problem := out_problem(out)) is not None:
        click.echo(f"Error: {problem}", err=True)
        sys.exit(2)
    if ended := end_leftovers():  # the agents of an embedded Ray whose driver was SIGKILLed
        logging.getLogger("trajshard.ingest").warning(
            "ended %d leftover Ray processes of a dead driver", len(ended)
        )
    # the job's first line at once, and without a bar (not a terminal, --no-progress) progress lines
    logging.getLogger("trajshard.ingest").setLevel(logging.INFO)
    try:
        lists = {"cameras": cameras, "keep_episodes": keep_episodes, "exclude_episodes": exclude_episodes}
        cfg = load_config(config_path, **{k: list(v) or None for k, v in lists.items()}, **flags)
        report = run_ingest(source, out, cfg, progress=progress, resume=resume)
    except StorageError as exc:  # SOURCE or OUT cannot be reached: exit 2, as for a usage error
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except (ValueError, IngestError, FileNotFoundError, ShardWriteError) as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: {out} holds an unfinished job; its finished shards are kept. Run the same "
            "command with --resume to go on, or remove OUT to start over",
            err=True,
        )
        sys.exit(130)
    if report.already_complete:
        click.echo(
            f"{report.out} is already complete (the same source and config): {report.samples} samples of "
            f"{report.episodes_written} episodes in {report.shards} shards; nothing to do"
        )
        return
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(
        f"wrote {report.samples} samples of {report.episodes_written} episodes into {report.shards} "
        f"shards in {report.seconds:.1f}s; quarantined {report.episodes_quarantined} of "
        f"{report.episodes_input} (see {report.out}/meta/quarantine.jsonl)"
        + (f"; filtered out {report.episodes_filtered}" if report.episodes_filtered else "")
    )
    if report.shard_note:
        click.echo(f"note: {report.shard_note}")


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default=None, show_default="auto", help="Source format."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    show_default="none",
    help="TOML job config: check a source with the settings the ingest will use.",
)
@_mapping_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 on findings too (data that is consistent but degraded).")
@click.option(
    "--sample-rate",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    help="Decode and deep-check only this share of samples (checksums, counts, order: always all).",
)
def validate(
    path: str,
    fmt: str | None,
    config_path: str | None,
    mapping: str | None,
    as_json: bool,
    strict: bool,
    sample_rate: float,
) -> None:
    """Validate an output dataset or a raw source. Exit 0 fit, 1 problems found, 2 could not run."""
    from trajshard.reports.validation import validate_output
    from trajshard.reports.validation_source import validate_source
    from trajshard.sources import is_trajshard_output

    if (Path(path) / ".trajshard" / "plan.json").is_file() and not is_trajshard_output(path):
        click.echo(
            f"validate: {path} is an unfinished ingest (interrupted): finish it with the same ingest "
            "command and --resume, then validate it",
            err=True,
        )
        sys.exit(2)
    try:
        if is_trajshard_output(path):
            kind, report = "dataset", validate_output(path, sample_rate)
        else:
            kind, report = (
                "source",
                validate_source(path, cfg=load_config(config_path, format=fmt, mapping=mapping)),
            )
    except Exception as exc:  # noqa: BLE001 - exit 2: the check itself could not run
        click.echo(f"validate: could not run: {exc}", err=True)
        sys.exit(2)
    for note in [] if as_json else report.notes:
        click.echo(f"note: {note}")
    findings = getattr(report, "findings", [])
    if findings and not as_json:
        click.echo(
            f"FINDINGS: {len(findings)} (the data is consistent but degraded)\n{format_problems(findings)}"
        )
    if as_json:
        click.echo(json.dumps({"kind": kind, **report.to_json()}, indent=2))
    elif report.ok:
        click.echo(
            f"OK: {kind} {path}: {report.episodes} episodes, {report.samples} samples, "
            f"{report.shards} shards checked"
        )
        if kind == "dataset":
            click.echo(_alignment_lines(path))
    else:
        click.echo(
            f"PROBLEMS: {kind} {path}: {len(report.problems)} found\n{format_problems(report.problems)}"
        )
    if getattr(report, "mixture", None) and not as_json:
        from trajshard.reports.mixture_check import render_mixture

        click.echo(render_mixture(report.mixture))
    sys.exit(0 if report.ok and not (strict and findings) else 1)


@main.command()
@click.argument("path")
@_flag("format", "Source format.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    show_default="none",
    help="TOML job config.",
)
@_flag("fps", "Target clock rate in Hz (a source's streams slower than it repeat samples).")
@_flag("source_fps", "Step rate of step-indexed sources (RLDS, HDF5).", absent="--fps")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the findings as JSON (meta/quality.json's form)."
)
def doctor(path: str, config_path: str | None, as_json: bool, **flags) -> None:
    """Data-quality findings of a source or an output dataset (docs/doctor.md).

    Exit 0 no error-severity findings, 1 some, 2 could not run. On an output, the job config is the
    one it was made with (meta/info.json); --config and the flags apply to a source."""
    from trajshard.reports.doctor import doctor as run_doctor

    try:
        report = run_doctor(path, load_config(config_path, **flags))
    except Exception as exc:  # noqa: BLE001 - exit 2: the check itself could not run
        click.echo(f"doctor: could not run: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.render())
    sys.exit(0 if report.ok else 1)


def _alignment_lines(out: str) -> str:
    from trajshard.reports.summary import alignment_summary

    return "alignment: " + "; ".join(
        f"{k} max|dt| {a['max_dt_s'] * 1000:.1f} ms, {a['dropped_ticks']} ticks dropped, {a['gaps']} gaps"
        for k, a in alignment_summary(out).items()
    )


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def stats(out: str, as_json: bool) -> None:
    """Counts, per-dimension statistics, alignment report and quarantine summary of a dataset."""
    from trajshard.reports.summary import render_stats, stats_report

    try:
        rep = stats_report(out)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"cannot read {out}/meta: {exc}") from exc
    click.echo(json.dumps(rep, indent=2) if as_json else render_stats(rep))


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--dim", type=int, default=None, show_default="all", help="Show one dimension with every bin.")
@click.option("--json", "as_json", is_flag=True, help="Print the histogram as JSON.")
@click.option(
    "--png",
    "png",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="none",
    help="Also draw a grid PNG.",
)
@click.option(
    "--shards",
    "shards",
    multiple=True,
    show_default="all",
    help="Only shards matching this glob (repeatable).",
)
@click.option(
    "--episodes", "episodes", multiple=True, show_default="all", help="Only these episodes (repeatable)."
)
@click.option("--width", type=int, default=64, help="Columns for the occupancy bars.")
def histogram(
    out: str, dim: int | None, as_json: bool, png: str | None, shards, episodes, width: int
) -> None:
    """Per-dimension action-bin occupancy of a dataset, read from its shards (streaming)."""
    from trajshard.reports.histogram import compute_histogram, render

    try:
        h = compute_histogram(out, tuple(shards), tuple(episodes))
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"cannot read {out}: {exc}") from exc
    if dim is not None and not 0 <= dim < h.counts.shape[0]:
        raise click.BadParameter(
            f"dimension {dim} out of range 0..{h.counts.shape[0] - 1}", param_hint="--dim"
        )
    if as_json:
        dims = [dim] if dim is not None else range(h.counts.shape[0])
        click.echo(json.dumps({"samples": h.samples, "dims": [h.dim_summary(d) for d in dims]}, indent=2))
    else:
        click.echo(render(h, dim, width))
    if png:
        from trajshard.reports.plots import histogram_png

        histogram_png(h, png)
        click.echo(f"wrote {png}", err=True)


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--episode",
    cls=_RequiredWithHint,
    hint="List the ids with: trajshard episodes OUT",
    help="Episode id, or the id of one part of a split episode (list them: trajshard episodes OUT).",
)
@click.option(
    "--png",
    "png",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="none",
    help="Write a contact sheet PNG.",
)
@click.option("--columns", type=int, default=8, help="Frames per camera in the contact sheet.")
@click.option(
    "--rerun",
    "rrd",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="none",
    help="Write a Rerun recording (.rrd) of the episode; needs the rerun extra.",
)
def inspect(out: str, episode: str, png: str | None, columns: int, rrd: str | None) -> None:
    """One episode read back from the shards: a text summary, a contact sheet, a Rerun recording."""
    from trajshard.reports.episode import load_episode, summary

    if rrd:
        from trajshard.reports.rerun_view import MissingExtra, rerun_module

        try:
            rerun_module()
        except MissingExtra as exc:  # before any shard is read
            raise click.ClickException(str(exc)) from exc
    try:
        ep = load_episode(out, episode)
    except KeyError as exc:
        raise click.ClickException(f"{exc.args[0]}; list them with: trajshard episodes {out}") from exc
    except (OSError, ValueError) as exc:  # a shard refused (trajshard.io.ShardError), an unreadable file
        raise click.ClickException(f"cannot read {out}: {exc}") from exc
    from trajshard.io import printable

    click.echo(printable(summary(ep)))  # source text (instructions): no escape sequence reaches the terminal
    if png:
        from trajshard.reports.sheet import contact_sheet_png

        contact_sheet_png(ep, png, columns)
        click.echo(f"wrote {png}", err=True)
    if rrd:
        from trajshard.reports.rerun_view import write_rrd

        write_rrd(ep, rrd)
        click.echo(f"wrote {rrd} (open it with: rerun {rrd})", err=True)


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--split", default=None, show_default="all", help="Only this split's episodes (a dataset).")
@_flag("format", "Source format (a source).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    show_default="none",
    help="TOML job config: the source settings the ingest will use (a source).",
)
@_mapping_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def episodes(path: str, split: str | None, config_path: str | None, as_json: bool, **flags) -> None:
    """The episode ids of a dataset (samples, split, instruction), or those a source's reader plans.

    The ids are what `inspect --episode` and ingest's --keep-episode/--exclude-episode take."""
    from trajshard.sources import is_trajshard_output

    try:
        if is_trajshard_output(path):
            text, doc = _dataset_episodes(path, split)
        else:
            text, doc = _source_episodes(path, load_config(config_path, **flags))
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"cannot list the episodes of {path}: {exc}") from exc
    click.echo(json.dumps(doc, indent=2) if as_json else text)


def _dataset_episodes(out: str, split: str | None) -> tuple[str, dict]:
    from trajshard.reports.episodes import dataset_episodes, render_dataset

    rows = dataset_episodes(out, split)
    return render_dataset(out, rows), {"kind": "dataset", "episodes": [r.to_json() for r in rows]}


def _source_episodes(path: str, cfg) -> tuple[str, dict]:
    from trajshard.reports.episodes import render_source
    from trajshard.sources import SourceSpec, checked_plan

    spec, source = SourceSpec.of(path, cfg.source, cfg.align.fps)
    ids, rejected = checked_plan(source)
    doc = {
        "kind": "source",
        "format": spec.format,
        "episodes": ids,
        "rejected": [p.to_record() for p in rejected],
    }
    return render_source(path, spec.format, ids, rejected), doc


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="OUT/report.html",
    help="Where to write it.",
)
@click.option("--episodes", type=click.IntRange(1), default=12, help="Episodes embedded in the browser.")
@click.option("--max-frames", type=click.IntRange(1), default=1200, help="Frames embedded over all episodes.")
@click.option("--frame-size", type=click.IntRange(16, 1024), default=128, help="Longest side of a frame, px.")
@click.option(
    "--histogram-samples",
    type=click.IntRange(1),
    default=200_000,
    help="Samples whose tokens are counted; a larger dataset: a sample of its shards.",
)
def report(
    out: str, html: str | None, episodes: int, max_frames: int, frame_size: int, histogram_samples: int
):
    """One self-contained HTML page to explore OUT: bins, statistics, quarantine, an episode browser."""
    from trajshard.reports.page import EpisodeBudget, ReportOptions, write_report

    options = ReportOptions(
        histogram_samples, EpisodeBudget(episodes=episodes, max_frames=max_frames, frame_size=frame_size)
    )
    try:
        path, facts = write_report(out, html, options)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise click.ClickException(f"cannot report on {out}: {exc}") from exc
    click.echo(facts.line(str(path)))


@main.command()
@click.argument("out", type=click.Path(file_okay=False), default="demo_out")
@click.option("--episodes", type=int, default=8, help="Synthetic episodes to record.")
@click.option("--seconds", type=float, default=4.0, help="Length of each episode.")
@click.option("--workers", type=int, default=None, show_default="every CPU", help="Tasks run at once.")
def demo(out: str, episodes: int, seconds: float, workers: int | None) -> None:
    """Record a synthetic raw dataset into OUT/raw, ingest it into OUT/dataset, validate, show the histogram."""
    import shutil

    from trajshard.pipelines.ingest import run_ingest
    from trajshard.reports.histogram import compute_histogram, render
    from trajshard.reports.validation import validate_output
    from trajshard.sources.synthetic import write_synthetic_dataset

    root = Path(out)
    raw, dataset = root / "raw", root / "dataset"
    shutil.rmtree(dataset, ignore_errors=True)
    ids = write_synthetic_dataset(raw, n_episodes=episodes, seconds=seconds)
    click.echo(
        f"[1/4] recorded {len(ids)} synthetic episodes (H.264 30 fps + VP9 15 fps, proprio ~100 Hz, "
        f"actions 20 Hz) in {raw}"
    )
    report = run_ingest(str(raw), str(dataset), load_config(workers=workers), progress=None)
    click.echo(
        f"[2/4] ingested: {report.samples} samples, {report.shards} shards, "
        f"{report.episodes_quarantined} quarantined, {report.seconds:.1f}s -> {dataset}"
    )
    if report.shard_note:
        click.echo(f"      note: {report.shard_note}")
    v = validate_output(dataset)
    if not v.ok:
        click.echo(f"[3/4] validation FAILED:\n{format_problems(v.problems)}")
        sys.exit(1)
    click.echo(
        f"[3/4] validated: {v.samples} samples in {v.shards} shards, {v.episodes} episodes, no problems"
    )
    click.echo("[4/4] action-bin histogram:\n")
    click.echo(render(compute_histogram(dataset)))


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--wids/--no-wids", "wids", default=True, help="Write meta/wids-<split>.json.")
@click.option(
    "--energon/--no-energon",
    "energon",
    default=None,
    show_default="when megatron-energon is installed",
    help="Write the Energon .nv-meta folder and .tar.idx files.",
)
@click.option(
    "--verify/--no-verify", default=True, help="Check each shard's size and sha256 against the manifest."
)
def index(out: str, wids: bool, energon: bool | None, verify: bool) -> None:
    """Write the index files other loaders read: wids shard lists and Megatron-Energon's .nv-meta."""
    import importlib.util

    from trajshard.loading.index import write_indexes
    from trajshard.loading.source import LoaderError

    if energon is None:
        energon = importlib.util.find_spec("megatron") is not None and (
            importlib.util.find_spec("megatron.energon") is not None
        )
        if not energon:
            click.echo(
                "megatron-energon is not installed: skipping .nv-meta (install torch==2.13.0 first, then "
                "pip install 'trajshard[energon]')",
                err=True,
            )
    try:
        report = write_indexes(Path(out), wids=wids, energon=energon, verify=verify)
    except LoaderError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    counts = ", ".join(f"{k}: {v} samples" for k, v in report.splits.items())
    click.echo(f"splits: {counts}{' (shards verified)' if verify else ''}")
    for p in report.wids:
        click.echo(f"wrote {p}")
    if report.energon is not None:
        click.echo(f"wrote {report.energon}/ and a .tar.idx beside each shard")


@main.command()
@click.argument("mixture", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--seed", type=int, default=None, show_default="the mixture file's, else 0", help="Seed of the draws."
)
@click.option(
    "--samples",
    type=click.IntRange(1),
    default=None,
    show_default="the mixture file's samples_per_epoch",
    help="Samples to write.",
)
@click.option(
    "--shuffle-buffer",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="Per-dataset shuffle buffer.",
)
@click.option("--shard-size", default="1GB", show_default=True, help="Shard size cap, e.g. 1GB, 256MB.")
@click.option(
    "--block", type=click.IntRange(1), default=1000, show_default=True, help="Samples per output 'episode'."
)
def mix(mixture: str, out: str, seed, samples, shuffle_buffer: int, shard_size: str, block: int) -> None:
    """Write the weighted, standardized mixture of MIXTURE (a mixture file) into OUT as one dataset."""
    from trajshard.loading.source import LoaderError
    from trajshard.pipelines.mix import run_mix

    try:
        report = run_mix(
            mixture,
            out,
            seed=seed,
            samples=samples,
            shuffle_buffer=shuffle_buffer,
            shard_size=shard_size,
            block=block,
        )
    except (ValueError, LoaderError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    drawn = ", ".join(f"{k}: {v}" for k, v in report.drawn.items())
    click.echo(
        f"wrote {report.samples} samples into {report.shards} shards in {report.seconds:.1f}s ({drawn})"
    )
