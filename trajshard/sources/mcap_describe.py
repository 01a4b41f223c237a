"""``describe`` for ROS 2 MCAP sources: one episode's topics (type, count, rate, span, JointState
names), metadata records (instruction candidates), videos beside the bag (codec, size, frames, how
their start is found), and a mapping template that ingests the source: the follower JointState topics
as the state, the lead/command/action/target ones as the action, every image topic and video as a
camera, the metadata field that reads like a task as the instruction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.mcap_bag import BagIndex, index_bags, make_reader
from trajshard.sources.mcap_layout import EpisodeFiles, find_episodes
from trajshard.sources.mcap_mapped import video_key
from trajshard.sources.mcap_topics import (
    IMAGE_TYPES,
    JOINT_STATE,
    NS,
    Series,
    TopicError,
    field_numbers,
    guess_topics,
    message_fields,
    pair_onto,
    stamp_of,
)
from trajshard.sources.mcap_videos import camera_name, frame_stamps
from trajshard.sources.video import VideoError, probe_video

TASK_WORDS = ("task_description", "instruction", "task", "description", "prompt", "language")


def describe(root: Path, **settings) -> Listing:
    """What the MCAP source ``root`` holds, from its first episode; ``settings`` may carry ``mcap``
    (the ``[mcap]`` table: ``stamp``). Times are seconds since the template's time base's first
    message, as the episode clock is."""
    episodes = find_episodes(Path(root).resolve())
    if not episodes:
        raise FileNotFoundError(f"{root}: no .mcap file (nor a folder of one)")
    files = next(iter(episodes.values()))
    index = index_bags(files.bags)
    stamps, first = _read_all(files, str(dict(settings.get("mcap") or {}).get("stamp", "header")))
    state, action = guess_topics(index.types)
    t0 = int(stamps[state[0]][0]) if state else min((int(s[0]) for s in stamps.values()), default=0)
    keys = _topic_keys(index, stamps, first, t0) + _record_keys(index)
    span = (
        (min(int(s[0]) for s in stamps.values()), max(int(s[-1]) for s in stamps.values()))
        if stamps
        else (0, 0)
    )
    videos, notes = _video_keys(files, span, t0)
    notes += _pairing_notes(state + action, stamps)
    if not state:
        notes.append("no JointState topic for the state: name the state topics in mapping.state")
    if not action:
        notes.append("no lead/command/action topic: actions are derived from the state")
    subtasks = index.metadata.get("task_info", {}).get("subtasks")
    if subtasks:
        notes.append(f"task_info.subtasks is kept with each episode, not as instructions: {subtasks[:80]}")
    mapping = _template(files, index, state, action)
    if "instruction" not in mapping:
        notes.append("no metadata field reads like a task: set mapping.instruction")
    return Listing(
        "mcap",
        len(episodes),
        files.episode_id,
        tuple(keys + videos),
        mapping,
        {"format": "mcap"},
        tuple(notes),
    )


def _timing(stamps: np.ndarray, t0: int) -> dict:
    d = np.diff(stamps)
    rate = float(NS / np.median(d)) if len(d) and np.median(d) > 0 else None
    return {"rate_hz": rate, "span_s": ((stamps[0] - t0) / NS, (stamps[-1] - t0) / NS), "count": len(stamps)}


def _read_all(files: EpisodeFiles, mode: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Every topic's stamps (sorted int64 ns) and first message."""
    first: dict[str, object] = {}
    stamps: dict[str, list[int]] = {}
    for bag in files.bags:
        with open(bag, "rb") as f:
            for _, channel, msg, ros in make_reader(f).iter_decoded_messages():
                first.setdefault(channel.topic, ros)
                stamps.setdefault(channel.topic, []).append(stamp_of(msg.log_time, ros, mode))
    return {t: np.sort(np.asarray(s, dtype=np.int64)) for t, s in stamps.items()}, first


def _topic_keys(index: BagIndex, stamps: dict, first: dict, t0: int) -> list[KeyInfo]:
    """A key per numeric field of each topic (JointState: ``position``, with its names), per image topic
    and per text field."""
    keys = []
    for topic, ty in sorted(index.types.items()):
        if topic not in stamps:
            keys.append(KeyInfo(topic, "other", ty, count=0, detail="no messages"))
            continue
        timing = _timing(stamps[topic], t0)
        if ty in IMAGE_TYPES:
            keys.append(KeyInfo(topic, "camera", ty, **timing))
        else:
            keys += _field_keys(topic, ty, first[topic], timing)
    return keys


def _pairing_notes(topics: list[str], stamps: dict[str, np.ndarray]) -> list[str]:
    """How the template's topics meet its time base (the largest lag), or why they cannot."""
    if len(topics) < 2:
        return []
    others = [Series(t, stamps[t], np.zeros((len(stamps[t]), 1))) for t in topics[1:]]
    try:
        _, _, lag = pair_onto(stamps[topics[0]], others, "auto")
    except TopicError as exc:
        return [f"pairing onto the time base {topics[0]}: {exc}"]
    worst = max(lag, key=lag.get)
    return [f"topics meet the time base {topics[0]} within {lag[worst] * 1e3:.1f} ms (largest: {worst})"]


def _field_keys(topic: str, ty: str, msg: object, timing: dict) -> list[KeyInfo]:
    fields = ["position", "velocity", "effort"] if ty == JOINT_STATE else list(message_fields(msg))
    fields = [f for f in fields if f != "header"]  # its stamp is the topic's time, listed as such
    out = []
    for name in fields:
        value = getattr(msg, name)
        if isinstance(value, str):
            out.append(KeyInfo(f"{topic}:{name}", "text", ty, detail=value[:80], **timing))
            continue
        try:
            numbers = field_numbers(msg, name)
        except TopicError:
            continue
        if not numbers and name != "position":
            continue
        own = tuple(getattr(msg, "name", ())) if ty == JOINT_STATE and name == "position" else ()
        key = topic if ty == JOINT_STATE and name == "position" else f"{topic}:{name}"
        out.append(KeyInfo(key, "numeric", ty, (len(numbers),), names=own, **timing))
    return out


def _record_keys(index: BagIndex) -> list[KeyInfo]:
    return [
        KeyInfo(
            f"{record}:{name}",
            "text" if _task_score(name, value) else "metadata",
            "metadata",
            detail=value[:80],
        )
        for record, entries in sorted(index.metadata.items())
        for name, value in sorted(entries.items())
    ]


def _video_keys(files: EpisodeFiles, span: tuple[int, int], t0: int) -> tuple[list[KeyInfo], list[str]]:
    keys, notes = [], []
    for video in files.videos():
        try:
            probe = probe_video(str(video))
        except VideoError as exc:
            notes.append(f"video {video.name} cannot be read: {exc}")
            continue
        try:
            stamps, how = frame_stamps(probe, video, None, span)
            timing = _timing(stamps, t0)
        except ValueError as exc:
            timing, how = {"count": len(probe.pts)}, "no start time"
            notes.append(f"video {video.name}: {exc}")
        detail = f"{video.name}, {video.stat().st_size} bytes, start from {how}"
        shape = (probe.height, probe.width, 3)
        keys.append(KeyInfo(video.name, "camera", probe.codec, shape, detail=detail, **timing))
    return keys, notes


def _task_score(name: str, value: str) -> int:
    """How much a metadata field looks like a task description (0: not at all)."""
    if len(value.split()) < 2 or value.lstrip().startswith(("[", "{")):
        return 0
    return next((len(TASK_WORDS) - i for i, w in enumerate(TASK_WORDS) if w in name.lower()), 0)


def _template(files: EpisodeFiles, index: BagIndex, state: list[str], action: list[str]) -> dict:
    cams = {camera_name(t): t for t, ty in sorted(index.types.items()) if ty in IMAGE_TYPES}
    for video in files.videos():
        cams.setdefault(camera_name(video_key(files, video)), video.name)
    mapping: dict = {}
    if state:
        mapping["state"] = list(state)
        mapping["time_base"] = state[0]
    if action:
        mapping["action"] = list(action)
    if cams:
        mapping["cameras"] = cams
    scored = [
        (_task_score(name, value), record, name)
        for record, entries in sorted(index.metadata.items())
        for name, value in sorted(entries.items())
    ]
    best = max(scored, default=(0, "", ""))
    if best[0]:
        mapping["instruction"] = {"record": best[1], "field": best[2]}
    return mapping
