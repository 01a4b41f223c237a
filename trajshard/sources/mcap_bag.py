"""Reading ROS 2 bags (one episode, in one or several split files): topic types, metadata records,
numeric fields as series, image topics' stamps, and the images themselves."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from trajshard.sources.mcap_topics import (
    Series,
    TopicError,
    default_field,
    field_numbers,
    make_series,
    stamp_of,
)
from trajshard.sources.video import StoredJpeg

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def make_reader(f):
    from mcap.reader import make_reader as _make
    from mcap_ros2.decoder import DecoderFactory

    return _make(f, decoder_factories=[DecoderFactory()])


@dataclass(frozen=True)
class BagIndex:
    """What the summaries and metadata of an episode's bag files say."""

    types: dict[str, str]  # topic -> message type
    counts: dict[str, int]  # topic -> messages
    metadata: dict[str, dict[str, str]]  # record name -> its map (the first file's, when repeated)


def index_bags(bags: tuple[Path, ...]) -> BagIndex:
    """The topics, message counts and metadata records of the bag files; ValueError naming a file
    without a summary."""
    types: dict[str, str] = {}
    counts: dict[str, int] = {}
    meta: dict[str, dict[str, str]] = {}
    for bag in bags:
        with open(bag, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            if summary is None:
                raise ValueError(f"{bag.name} has no summary section (recording not finished?)")
            stats = summary.statistics.channel_message_counts if summary.statistics else {}
            for cid, c in summary.channels.items():
                types[c.topic] = summary.schemas[c.schema_id].name if c.schema_id in summary.schemas else ""
                counts[c.topic] = counts.get(c.topic, 0) + int(stats.get(cid, 0))
            for m in reader.iter_metadata():
                meta.setdefault(m.name, dict(m.metadata))
    return BagIndex(types, counts, meta)


def read_series(
    bags: tuple[Path, ...], wanted: dict[str, list[str]], stamp_mode: str, limit: int | None = None
) -> tuple[dict[tuple[str, str], Series], dict[str, np.ndarray]]:
    """Each wanted (topic, field)'s series (a field "" is the message type's default), and every
    wanted topic's stamps (int64 ns, in message order). ``limit`` stops each topic after that many
    messages (for a look at the fields). TopicError names the topic."""
    rows: dict[tuple[str, str], tuple[list[int], list[list[float]], list[str]]] = {}
    stamps: dict[str, list[int]] = {t: [] for t in wanted}
    for bag in bags:
        with open(bag, "rb") as f:
            for schema, channel, msg, ros in make_reader(f).iter_decoded_messages(topics=list(wanted)):
                topic = channel.topic
                if limit is not None and len(stamps[topic]) >= limit:
                    continue
                stamp = stamp_of(msg.log_time, ros, stamp_mode)
                stamps[topic].append(stamp)
                for fld in wanted[topic]:
                    try:
                        numbers = field_numbers(ros, fld or default_field(schema.name, ros))
                    except TopicError as exc:
                        raise TopicError(f"topic {topic}: {exc}") from exc
                    got = rows.setdefault((topic, fld), ([], [], []))
                    got[0].append(stamp)
                    got[1].append(numbers)
                    if not got[2] and isinstance(getattr(ros, "name", None), list):
                        got[2].extend(ros.name)
    missing = [t for t, s in stamps.items() if not s]
    if missing:
        raise TopicError(f"topics {missing} have no messages")
    series = {key: make_series(key[0], s, r, n) for key, (s, r, n) in rows.items()}
    return series, {t: np.asarray(s, dtype=np.int64) for t, s in stamps.items()}


def iter_images(bags: tuple[Path, ...], topic: str, start: int | None = None) -> Iterator:
    """The frames of an image topic in message order, from index ``start``."""
    i = 0
    for bag in bags:
        with open(bag, "rb") as f:
            for _, _, _, ros in make_reader(f).iter_decoded_messages(topics=[topic]):
                if not start or i >= start:
                    yield image_frame(ros, i)
                i += 1


def image_frame(ros, i: int):
    """A ``sensor_msgs/Image`` or ``CompressedImage`` as a frame (JPEG bytes are passed through)."""
    if hasattr(ros, "format"):  # CompressedImage
        data = bytes(ros.data)
        if "png" in ros.format.lower():
            frame = av.VideoFrame.from_ndarray(
                np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), format="rgb24"
            )
            frame.pts = i
            return frame
        return StoredJpeg(data, i)
    channels = CHANNELS.get(ros.encoding)
    if channels is None:
        raise ValueError(f"image encoding {ros.encoding!r} is not supported ({sorted(CHANNELS)})")
    rows = np.frombuffer(bytes(ros.data), np.uint8).reshape(ros.height, ros.step)
    img = rows[:, : ros.width * channels].reshape(ros.height, ros.width, channels)
    if ros.encoding.startswith("bgr"):
        img = img[..., [2, 1, 0]]
    elif channels == 1:
        img = np.repeat(img, 3, axis=2)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[..., :3]), format="rgb24")
    frame.pts = i
    return frame
