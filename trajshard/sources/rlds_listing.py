"""``trajshard describe`` of an RLDS / Open X-Embodiment dataset (``sources/rlds.py``'s ``describe``):
every leaf of ``features.json`` (dtype, shape, encoding, TFDS description) with one episode's steps,
and the mapping template that, unedited, reads the dataset as the reader does without a mapping.
Where a default key is absent (Open X-Embodiment datasets that keep ``steps/observation/joint_pos``
and ``.../gripper`` apart, or a ``steps/action/...`` dict), the template guesses the numeric features
under the default's place and a note says so. Kept apart from the reader so that module stays the
reader; the reader is handed in, never imported at run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trajshard.sources.describe_keys import first_loadable, is_instruction_name, short_text, skipped_note
from trajshard.sources.listing import KeyInfo, Listing

if TYPE_CHECKING:
    from trajshard.sources.rlds import RLDSSource

PREFIX = "steps/observation/"
STATE, ACTION, LANGUAGE = "steps/observation/state", "steps/action", "steps/language_instruction"
NUMERIC = ("float", "int", "uint", "double")
NOT_STATE = ("embedding",)  # numeric features under steps/observation that are never robot state


def listing(open_source: Callable[[dict | None], RLDSSource], source_fps: float | None) -> Listing:
    """The listing and template of the dataset ``open_source(mapping)`` opens. When the defaults read
    no episode (no ``steps/observation/state``), the example is read through the template's guesses."""
    src = open_source(None)
    ids, rejected = src.plan()
    ep, reasons = first_loadable(ids, src.load)
    template, guessed = template_of(src.spec, src.camera_keys)
    if ep is None and any("guessed" in g for g in guessed):
        src = open_source(template)
        ep, reasons = first_loadable(ids, src.load)
    ex = src._example(ep.episode_id)[0] if ep is not None else {}
    n = len(next(iter(ep.streams.values())).timestamps) if ep is not None else None
    keys = [_leaf_key(k, spec, ex, n, source_fps) for k, spec in src.spec.items()]
    notes = [f"{len(ids)} episodes in {len(src.shards)} shard(s), {len(rejected)} rejected"]
    notes += skipped_note(reasons, ep.episode_id if ep else "")
    notes += guessed
    notes.append(
        "RLDS carries no clock: step i is at i / source_fps (default --fps 10); set --source-fps to the "
        "recording's rate" + ("" if source_fps else " (rates and spans above are left out without it)")
    )
    settings = {"source_fps": float(source_fps)} if source_fps else {}
    return Listing(
        "rlds", len(ids), ep.episode_id if ep else "", tuple(keys), template, settings, tuple(notes)
    )


def template_of(spec: dict[str, dict], cameras: dict[str, str]) -> tuple[dict, list[str]]:
    """The mapping that reads the dataset as the reader's defaults do (their keys spelled out), and
    the notes on what it had to guess where a default key is absent."""
    out: dict = {}
    notes: list[str] = []
    for which, default, under in (("state", STATE, PREFIX), ("action", ACTION, ACTION + "/")):
        if default in spec:
            out[which] = [default]
            continue
        guess = [k for k, v in spec.items() if k.startswith(under) and _numeric_state(k, v)]
        if guess:
            out[which] = guess
            notes.append(
                f"no {default} feature: mapping.{which} guessed as {guess} (in this order); check it"
            )
        else:
            notes.append(f"no {default} feature and no numeric feature under {under}: set mapping.{which}")
    if cameras:
        out["cameras"] = dict(cameras)
    column, note = _instruction_key(spec)
    if column:
        out["instruction"] = {"column": column}
    notes += [note] if note else []
    return out, notes


def _numeric_state(key: str, spec: dict) -> bool:
    """A numeric tensor that may be robot state or action: not a flag (``is_*``), an embedding, text."""
    name = key.rsplit("/", 1)[-1]
    dtype = str(spec.get("tensor", {}).get("dtype", ""))
    return (
        dtype.startswith(NUMERIC)
        and not name.startswith("is_")
        and not any(w in name for w in NOT_STATE)
        and not is_instruction_name(name)
    )


def _instruction_key(spec: dict[str, dict]) -> tuple[str, str]:
    """(the text feature the template reads the instruction from, a note when it is a guess)."""
    if "text" in spec.get(LANGUAGE, {}):
        return LANGUAGE, ""
    texts = [k for k, v in spec.items() if "text" in v and is_instruction_name(k.rsplit("/", 1)[-1])]
    texts.sort(key=lambda k: not k.startswith("steps/"))  # a per-step label first
    if texts:
        return texts[0], (
            f"no {LANGUAGE} feature: mapping.instruction guessed as {{column = {texts[0]!r}}} "
            "(the reader without a mapping gives no instruction); check it"
        )
    return "", (
        f"no {LANGUAGE} feature and no text feature named like an instruction: episodes have no "
        'instruction; set mapping.instruction (a string, or { column = "<text feature>" })'
    )


def _leaf_key(key: str, spec: dict, ex: dict, n: int | None, rate: float | None) -> KeyInfo:
    """One features.json leaf: a camera (an image feature under steps/observation), text, or a tensor."""
    kind_spec = spec.get("image") or spec.get("tensor") or {}
    dims = tuple(
        int(d) for d in (kind_spec.get("shape") or {}).get("dimensions") or () if str(d).lstrip("-").isdigit()
    )
    stepped = key.startswith("steps/")
    span = (0.0, (n - 1) / rate) if stepped and n and rate else None
    n = n if stepped else None  # episode-level features have one value per episode
    about = short_text(spec.get("description", ""), 50) if spec.get("description") else ""
    if "image" in spec:
        kind = "camera" if key.startswith(PREFIX) else "other"
        dtype = str(kind_spec.get("encodingFormat", "image"))
        return KeyInfo(key, kind, dtype, dims, rate if stepped else None, span, n, (), about)
    if "text" in spec:
        texts = sorted({t.decode("utf-8", "replace") for t in ex.get(key, [])} - {""})
        sample = ", ".join(short_text(t) for t in texts[:2])
        candidate = sample and (stepped or is_instruction_name(key))
        detail = f"instruction candidate: {sample}" if candidate else f"{sample} {about}".strip()
        return KeyInfo(key, "text", "string", (), rate if stepped else None, span, n, (), detail)
    name = key.rsplit("/", 1)[-1]
    kind = "metadata" if name.startswith("is_") or not stepped else "numeric"
    return KeyInfo(
        key, kind, str(kind_spec.get("dtype", "")), dims, rate if stepped else None, span, n, (), about
    )
