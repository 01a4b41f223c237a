"""Topics of ROS 2 MCAP bags read into numeric series, and several series brought onto one time base.

A topic's *field* is a numeric message field: ``position`` (the default of ``sensor_msgs/JointState``),
``velocity``, ``effort``, ``data`` (``std_msgs/Float64MultiArray``, the default of a message with one
numeric array), or a dotted path (``pose.position``); a number gives one column, an array its width,
a sub-message its numeric fields in declaration order.

Pairing (``pair_onto``): each time-base stamp takes a message from every other topic. A topic at the
time base's rate (within 10 %) gives the message nearest in time: at equal rates with jitter under
half an interval, message k of every topic pairs with stamp k, so values reach the episode bit-exact.
A topic at another rate gives the latest message at or before the stamp (held, never taken from the
future: a slower command topic is in force until the next). ``sync`` ("auto", the default, or
"nearest" / "hold" for every topic) overrides the choice. Stamps outside a topic's span (beyond half
an interval) are trimmed, as the align stage trims to the streams' common span; inside it, a message
further than one interval (the larger of the two topics', 1.5 for a held one) is a dropout and
refuses the episode. The largest lag of each topic is kept with the episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Number
from types import SimpleNamespace

import numpy as np

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
SYNC_RULES = ("auto", "nearest", "hold")
SAME_RATE = 0.1  # topics whose median intervals differ by less than this fraction pair by nearest
NS = 1_000_000_000


class TopicError(ValueError):
    """A topic or field that cannot give numbers; the message names the topic."""


@dataclass(frozen=True)
class Series:
    """One topic's field: ``values[i]`` stamped ``stamps[i]`` (int64 ns, sorted), with the message's
    own dimension names (JointState ``name``) when they fit the width."""

    topic: str
    stamps: np.ndarray  # int64 [N]
    values: np.ndarray  # float64 [N, W]
    names: tuple[str, ...] = ()


def message_fields(msg: object) -> dict[str, object]:
    """A decoded message's fields in declaration order (mcap_ros2's classes keep them in ``__slots__``)."""
    slots = getattr(type(msg), "__slots__", None)
    if slots:
        return {k: getattr(msg, k) for k in slots}
    return dict(vars(msg))


def default_field(type_name: str, msg: object) -> str:
    """The field read when a part names none: JointState ``position``, else the one numeric array."""
    if type_name == JOINT_STATE:
        return "position"
    fields = message_fields(msg)
    arrays = [k for k, v in fields.items() if isinstance(v, list | tuple) and v and isinstance(v[0], Number)]
    arrays = arrays or [k for k, v in fields.items() if isinstance(v, Number) and not isinstance(v, bool)]
    if len(arrays) == 1:
        return arrays[0]
    raise TopicError(f"a {type_name} message has numeric fields {arrays}: name one (topic:field)")


def field_numbers(msg: object, field: str) -> list[float]:
    """The numbers of ``msg.field`` (a dotted path) in order."""
    value = msg
    for step in field.split("."):
        if not isinstance(value, SimpleNamespace) or not hasattr(value, step):
            raise TopicError(f"has no field {field!r}")
        value = getattr(value, step)
    return _flatten(value, field)


def _flatten(value: object, field: str) -> list[float]:
    if isinstance(value, bool) or isinstance(value, str | bytes):
        raise TopicError(f"field {field!r} is not numeric")
    if isinstance(value, Number):
        return [float(value)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _flatten(v, field)]
    if isinstance(value, SimpleNamespace):
        fields = message_fields(value).values()
        return [x for v in fields if not isinstance(v, str) for x in _flatten(v, field)]
    raise TopicError(f"field {field!r} is a {type(value).__name__}, not numbers")


def stamp_of(log_time: int, ros: object, mode: str) -> int:
    """The message's time in ns: its ``header.stamp`` (``mode`` "header", when it has one) or log time."""
    header = getattr(ros, "header", None)
    if mode == "log" or header is None:
        return int(log_time)
    return int(header.stamp.sec) * NS + int(header.stamp.nanosec)


def make_series(topic: str, stamps: list[int], rows: list[list[float]], names: list[str]) -> Series:
    """The series of one topic's collected messages, sorted by stamp; TopicError when widths differ."""
    widths = sorted({len(r) for r in rows})
    if len(widths) != 1 or widths[0] == 0:
        raise TopicError(f"topic {topic}: message widths {widths} (need one non-zero width)")
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    values = np.asarray(rows, dtype=np.float64)[order]
    own = tuple(str(n) for n in names) if len(names) == widths[0] else ()
    return Series(topic, np.asarray(stamps, dtype=np.int64)[order], values, own)


def pair_onto(base: np.ndarray, others: list[Series], sync: str) -> tuple[np.ndarray, dict, dict]:
    """(base stamps kept, each topic's message index per kept stamp, each topic's largest lag in s).

    Raises TopicError naming the topic and time when a kept stamp's message is further than one
    interval away (a dropout)."""
    base_dt = _interval(base)
    keep = np.ones(len(base), dtype=bool)
    for s in others:
        slack = max(base_dt, _interval(s.stamps)) / 2
        keep &= (base >= s.stamps[0] - slack) & (base <= s.stamps[-1] + slack)
    kept = base[keep]
    index, lag = {}, {}
    for s in others:
        own_dt = _interval(s.stamps)
        same = abs(own_dt - base_dt) <= SAME_RATE * max(base_dt, own_dt)
        held = sync == "hold" or (sync == "auto" and not same)
        idx = _hold(s.stamps, kept) if held else _nearest(s.stamps, kept)
        gap = np.abs(s.stamps[idx] - kept)
        bound = max(base_dt, own_dt) * (1.5 if held else 1.0)
        if len(gap) and gap.max() > bound:
            k = int(np.argmax(gap))
            raise TopicError(
                f"topic {s.topic}: no message within {bound / NS * 1e3:.1f} ms of the time base's stamp "
                f"at {(kept[k] - base[0]) / NS:.3f} s (nearest {gap[k] / NS * 1e3:.1f} ms away: a dropout)"
            )
        index[s.topic] = idx
        lag[s.topic] = float(gap.max()) / NS if len(gap) else 0.0
    return kept, index, lag


def _interval(stamps: np.ndarray) -> float:
    """Median ns between stamps (0 for fewer than two)."""
    return float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.0


def _nearest(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the stamp nearest each of ``at`` (ties: the earlier)."""
    right = np.clip(np.searchsorted(stamps, at, side="left"), 0, len(stamps) - 1)
    left = np.clip(right - 1, 0, len(stamps) - 1)
    return np.where(np.abs(stamps[left] - at) <= np.abs(stamps[right] - at), left, right)


def _hold(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the latest stamp at or before each of ``at`` (the first, before them all)."""
    return np.clip(np.searchsorted(stamps, at, side="right") - 1, 0, len(stamps) - 1)


ACTION_WORDS = ("lead", "command", "cmd", "action", "target")


def is_action_topic(topic: str) -> bool:
    """Whether a topic's name says it carries commands (a leader arm, a command, a target)."""
    return any(w in topic.lower() for w in ACTION_WORDS)


def guess_topics(types: dict[str, str]) -> tuple[list[str], list[str]]:
    """(state topics, action topics) when a mapping names none: the JointState topics whose names say
    commands (lead, leader, command, action, target) are the action, the others the state, in name
    order."""
    joints = sorted(t for t, ty in types.items() if ty == JOINT_STATE)
    return [t for t in joints if not is_action_topic(t)], [t for t in joints if is_action_topic(t)]


def short_names(topics: list[str]) -> dict[str, str]:
    """A short, distinct name per topic: its path segments less those every topic shares at the start
    and the end (``/robot/arm_left_follow/joint_states`` -> ``arm_left_follow``)."""
    parts = {t: [p for p in t.split("/") if p] for t in topics}
    if len(topics) < 2:
        return {t: (p[-1] if p else t) for t, p in parts.items()}
    lists = list(parts.values())
    head = 0
    while all(len(p) > head + 1 for p in lists) and len({p[head] for p in lists}) == 1:
        head += 1
    tail = 0
    while all(len(p) > head + tail + 1 for p in lists) and len({p[-1 - tail] for p in lists}) == 1:
        tail += 1
    return {t: "/".join(p[head : len(p) - tail]) or t for t, p in parts.items()}
