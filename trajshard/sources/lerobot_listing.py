"""``trajshard describe`` of a LeRobot dataset (``sources/lerobot.py``'s ``describe``): every feature of
``meta/info.json`` with one episode's table and videos, the instruction candidates, and the mapping
template that reads the dataset as the reader does by default. Kept apart from the reader so that
module stays the reader; the reader is handed in, never imported at run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trajshard.schemas.episode import Episode, EpisodeError
from trajshard.sources.describe_keys import (
    camera_key,
    first_loadable,
    is_instruction_name,
    rate_and_span,
    short_text,
    skipped_note,
)
from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.mapping import part_text

if TYPE_CHECKING:
    from trajshard.sources.lerobot import LeRobotSource


INDEX_COLUMNS = ("frame_index", "episode_index", "index")


def listing(
    open_source: Callable[[dict | None], LeRobotSource], mapping: dict | None, not_instructions: set[str]
) -> Listing:
    """The features of ``meta/info.json`` (dtype, shape, names) with one episode's rows, rate and span,
    its videos probed (codec, size, frames), the instruction candidates, and the mapping that ingests
    the dataset as the reader does by default (modality.json's slices spelled out). When the defaults
    read no episode, the episode is read through the template's guesses. ``open_source(mapping)``
    opens the dataset with a mapping; ``not_instructions`` are the labels the reader skips."""
    src = open_source(mapping)
    ids, _rejected = src.plan()
    ep, reasons, table = _example(src, ids)
    columns = table.column_names if table is not None else list(src.info.get("features", {}))
    notes: list[str] = []
    template = _template(src, columns, notes)
    if ep is None and any("guessed" in n for n in notes):
        src = open_source(template)
        ep, reasons, table = _example(src, ids)
    example = ep.episode_id if ep else (ids[0] if ids else "")
    keys = [_feature_key(src, k, table, ep, not_instructions) for k in src.info.get("features", {})]
    keys += [
        KeyInfo(c, "other", str(table.schema.field(c).type)) for c in columns if c not in src.info["features"]
    ]
    notes = [
        _summary_note(src, len(ids), not_instructions),
        *skipped_note(reasons, example),
        *src.notes,
        *notes,
    ]
    notes += _count_notes(src, keys, table, example, len(ids))
    fps = float(src.info.get("fps") or 0)
    return Listing(
        "lerobot", len(ids), example, tuple(keys), template, {"fps": fps} if fps else {}, tuple(notes)
    )


def _example(src: LeRobotSource, ids: list[str]):
    """(the first episode that loads, the reasons of those before it, its table or the first one's)."""
    ep, reasons = first_loadable(ids, src.load)
    return ep, reasons, _example_table(src, ep.episode_id if ep else (ids[0] if ids else ""))


def _count_notes(src: LeRobotSource, keys: list[KeyInfo], table, example: str, episodes: int) -> list[str]:
    """A video whose frames are not the table's rows (in the example); a camera whose files some
    episodes lack (v2: one file per episode)."""
    out = [
        f"{k.key}: {k.count} frames in {example} for {table.num_rows} table rows; the clock ends where the "
        "shorter ends"
        for k in keys
        if k.kind == "camera" and k.count is not None and table is not None and k.count != table.num_rows
    ]
    short = {k: _files(src, k) for k in src.cameras if not src.version.startswith("v3")}
    return out + [
        f"camera {k!r} has video files for {n} of {episodes} episodes; the others are quarantined"
        for k, n in short.items()
        if n < episodes
    ]


def _example_table(src: LeRobotSource, example: str):
    if not example:
        return None
    try:
        return src._table(example, src.episodes[example], int(src.episodes[example]["episode_index"]))[0]
    except EpisodeError:
        return None


def _feature_key(src: LeRobotSource, key: str, table, ep: Episode | None, skip: set[str]) -> KeyInfo:
    feat = src.info["features"][key] if isinstance(src.info["features"][key], dict) else {}
    shape, dtype = tuple(int(d) for d in feat.get("shape") or ()), str(feat.get("dtype", ""))
    if dtype in ("video", "image"):
        return _video_key(src, key, shape, ep)
    if table is None or key not in table.column_names:
        return KeyInfo(key, "other", dtype, shape, detail="not in the example's table")
    rate, span = rate_and_span(table.column(src.time_key).cast("float64").to_numpy())
    kind = "time" if key == src.time_key else "metadata" if key in INDEX_COLUMNS else "numeric"
    detail = ""
    if kind == "numeric" and (key == "task_index" or is_instruction_name(key)):
        labels = sorted({src._label(v) for v in table.column(key).to_pylist()} - {""})
        texts = ", ".join(short_text(t) for t in labels[:3])
        if labels and all(t.strip().lower() in skip for t in labels):
            kind, detail = "metadata", f"labels {texts} (not instructions)"
        else:
            kind, detail = "text", "instruction candidate" + (f" (via meta/tasks): {texts}" if labels else "")
    return KeyInfo(key, kind, dtype, shape, rate, span, table.num_rows, src._names(key), detail)


def _video_key(src: LeRobotSource, key: str, shape: tuple[int, ...], ep: Episode | None) -> KeyInfo:
    declared = (
        src.info["features"][key].get("info") or src.info["features"][key].get("video_info") or {}
    ).get("video.codec", "")
    files = _files(src, key)
    name = next((n for n, k in src.camera_names.items() if k == key), "")
    extra = (f"output name {name!r}; " if name else "") + f"{files} video file(s)"
    extra += f", declared {declared}" if declared else ""
    if ep is not None and name in ep.cameras:
        return camera_key(key, ep.cameras[name], extra)
    why = "no video file at all: left out" if key not in src.cameras else "no video in the example"
    return KeyInfo(key, "camera", declared, shape, detail=f"{why}; {extra}")


def _files(src: LeRobotSource, key: str) -> int:
    """Video files of a camera (v2: one per episode; v3: one per many episodes)."""
    pattern = "{k}/*/*" if src.version.startswith("v3") else "*/{k}/*"
    return sum(1 for _ in (src.root / src.video_dir).glob(pattern.format(k=key)))


def _summary_note(src: LeRobotSource, episodes: int, skip: set[str]) -> str:
    tasks = [t for t in src.tasks.values() if t.strip().lower() not in skip]
    return (
        f"LeRobot {src.version}, robot_type {src.info.get('robot_type')!r}, {src.info.get('fps')} fps, "
        f"{episodes} episodes, {src.info.get('total_frames')} frames, {len(tasks)} task(s)"
        + (f": {short_text(tasks[0])}" if tasks else "")
    )


def _template(src: LeRobotSource, columns: list[str], notes: list[str]) -> dict:
    """The [mapping] that reads the dataset as the reader does without one; where the default names are
    absent, the columns whose names say state or action (noted as guesses)."""
    out: dict[str, object] = {}
    for key, parts, words in (
        ("state", src.state_parts, ("state", "qpos", "proprio")),
        ("action", src.action_parts, ("action",)),
    ):
        if all(p.key in columns for p in parts):
            out[key] = [part_text(p) for p in parts]
            continue
        guess = [c for c in columns if any(w in c.lower() for w in words) and not is_instruction_name(c)]
        if guess:
            out[key] = guess[:1]
            notes.append(
                f"no {[p.key for p in parts]} column: mapping.{key} guessed as {guess[:1]}; check it"
            )
    wanted = (
        src._wanted_cameras()
    )  # a declared camera without files stays in: the reader leaves it out (noted)
    if wanted:
        out["cameras"] = wanted
    chosen = src.mapping.instruction
    if chosen is not None:
        out["instruction"] = chosen.value if chosen.kind == "constant" else {chosen.kind: chosen.value}
    elif "task_index" in columns:
        out["instruction"] = {"column": "task_index"}
    out["time_base"] = src.time_key
    if not src.explicit and src.mapping.state:
        notes.append(
            "meta/modality.json is read as the mapping by default; the template spells its slices out"
        )
    unnamed = [
        p.key for p in (*src.state_parts, *src.action_parts) if p.key in columns and not src._names(p.key)
    ]
    if unnamed:
        notes.append(
            f"{unnamed} carry no dimension names: with a mapping they are named key[i] (add names = [...] to a part)"
        )
    return out
