"""Video files through PyAV: cheap probing (demux only, no decoding) and streaming decode."""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

MAX_FRAMES = 10_000_000  # a probe stops here: a header can not make us allocate without limit
DECODE_THREADS_ENV = "TRAJSHARD_DECODE_THREADS"


# Codecs whose keyframes reset every reference, so the packets between a group's last needed frame and
# the next keyframe can be skipped. H.264/HEVC are not here: an I-frame flagged as a keyframe need not
# be an IDR, and skipping packets there makes the decoder drop frames (seen with x264 output).
SPARSE_CODECS = {"av1", "libdav1d", "libaom-av1", "vp9", "libvpx-vp9", "vp8", "libvpx"}


# Codecs whose every frame is coded on its own (each packet a keyframe).
INTRA_ONLY_CODECS = {"mjpeg", "png", "rawvideo", "ffv1"}
H264_IDR = 5  # nal_unit_type of an IDR slice: every reference is reset
HEVC_IRAP = range(16, 22)  # BLA, IDR and CRA NAL unit types: random access points


class VideoError(ValueError):
    """A video file that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class VideoProbe:
    pts: np.ndarray  # int64, presentation order
    time_base: float
    width: int
    height: int
    codec: str
    entry: np.ndarray | None = None  # bool [F]: a decoder may start at this frame (see entry_test)

    @property
    def seconds(self) -> np.ndarray:
        return self.pts.astype(np.float64) * self.time_base


# Codec options for avformat_find_stream_info's trial decoding only (PyAV's own decoder never sees them).
PROBE_DECODE_OPTIONS = {"skip_frame": "nonkey"}


def open_video(path: str) -> av.container.InputContainer:
    """``av.open`` without the stream-info probe decoding frames, when the container's headers say
    enough. ``av.open`` runs FFmpeg's ``avformat_find_stream_info``, which decodes frames to learn the
    pixel format and, for H.264, until it has seen 7 or more, paid by every probe and every pass-2
    task. Told to decode keyframes only, it
    stops at the first. Nothing here reads what that leaves unset (the codec context's ``pix_fmt``,
    and the ``has_b_frames`` guess of a stream whose headers do not carry it: only read for AV1 and VP8/9,
    which never reorder); decoding is unchanged (the same frames, a test compares the pixels). A
    container whose headers do not give the frame size (raw streams) is opened again the usual way."""
    container = av.open(path, options=PROBE_DECODE_OPTIONS)
    try:
        video = container.streams.video
        ctx = video[0].codec_context if video else None
        sized = ctx is None or (ctx.width and ctx.height)  # no decoder at all: nothing a plain open adds
    except BaseException:
        container.close()
        raise
    if not sized:
        container.close()
        container = av.open(path)
    return container


def probe_video(path: str, window: tuple[float, float] | None = None) -> VideoProbe:
    """Read every packet's presentation time without decoding (demux only).

    With ``window`` = (start, end) in seconds, only the frames with ``start - 1e-6 <= time < end - 1e-6``,
    and only that part of the file is read: a file that holds many episodes (LeRobot v3) is not demuxed
    whole for each of them. The demuxer seeks to the keyframe before ``start`` and stops once a packet's
    decode time reaches ``end`` (no later packet can be shown earlier). The whole-file checks
    (truncation against the header) are then left out; an episode's own missing frames show up where
    its frames are aligned."""
    try:
        container = open_video(path)
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoError("has no video stream")
        stream = container.streams.video[0]
        if stream.time_base is None:
            raise VideoError("video stream has no time base")
        time_base = float(stream.time_base)
        pts, entries = [], []
        is_entry = entry_test(stream.codec_context)
        try:
            packets = container.demux(stream) if window is None else _window(container, stream, window)
            for packet in packets:
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    raise VideoError(f"packet {len(pts)} has neither PTS nor DTS")
                pts.append(t)
                if (
                    is_entry is not None
                    and packet.pts is not None
                    and packet.is_keyframe
                    and is_entry(packet)
                ):
                    entries.append(packet.pts)
                if len(pts) > MAX_FRAMES:
                    raise VideoError(f"more than {MAX_FRAMES} frames")
        except av.FFmpegError as exc:
            raise VideoError(f"demux failed after {len(pts)} packets: {exc}") from exc
        ctx = stream.codec_context
        width, height, codec = ctx.width, ctx.height, ctx.name
        declared_frames = int(stream.frames or 0) if window is None else 0
        # the container's duration, which muxers count from 0 (Matroska) or from the first frame: the
        # smaller reading, so a file is called truncated only when its frames end before both
        declared_end = container.duration / 1e6 if container.duration and window is None else None
    if window is not None:
        start, end = window
        pts = [t for t in pts if start - 1e-6 <= t * time_base < end - 1e-6]
    if not pts:
        raise VideoError(
            "has no frames" if window is None else f"has no frames from {start:.3f} to {end:.3f} s"
        )
    if not width or not height:
        raise VideoError("video stream declares no frame size")
    arr = np.sort(np.asarray(pts, dtype=np.int64))
    if np.any(np.diff(arr) == 0):
        raise VideoError("two frames share one presentation timestamp")
    if declared_frames and len(arr) < declared_frames:
        raise VideoError(f"truncated: {len(arr)} frames in the file, its header declares {declared_frames}")
    if declared_end and len(arr) > 1:
        last = arr[-1] * time_base
        interval = float(np.median(np.diff(arr))) * time_base
        if last + 2 * interval + 0.25 < declared_end:
            raise VideoError(
                f"truncated: frames end at {last:.2f} s, its header declares {declared_end:.2f} s"
            )
    entry = np.isin(arr, np.asarray(entries, dtype=np.int64)) if is_entry is not None else None
    return VideoProbe(arr, time_base, width, height, codec, entry)


def _window(
    container: av.container.InputContainer, stream: av.VideoStream, window: tuple[float, float]
) -> Iterator[av.Packet]:
    """The stream's packets from the keyframe before ``window[0]`` seconds until a packet's decode time
    reaches ``window[1]``. The seek lands on a keyframe by decode time; when that keyframe is shown
    after ``window[0]`` (B-frames: frames of the group before it may still be shown inside the window),
    or has no presentation time, the packets are read from the start of the file instead."""
    time_base = float(stream.time_base)
    # the window's first frame, or one within 2 us of it (no two frames are that close)
    start_pts = int(np.floor((window[0] + 1e-6) / time_base))
    end = window[1]
    if start_pts > 0:
        container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        first = next((p for p in packets if p.size), None)
        if first is not None and first.pts is not None and first.pts <= start_pts:
            packets = itertools.chain([first], packets)
        else:
            container.seek(0, stream=stream, backward=True, any_frame=False)
            packets = container.demux(stream)
    else:
        packets = container.demux(stream)
    for packet in packets:
        if packet.dts is not None and packet.dts * time_base >= end:
            return  # decode times only grow, and a frame is never shown before it is decoded
        yield packet


def entry_test(ctx) -> Callable[[av.Packet], bool] | None:
    """How to tell, from a keyframe packet, whether decoding may start there and give every later frame
    exactly as a decode from the start of the file would; None when it cannot be told for the codec.

    AV1, VP8/VP9 keyframes and intra-only codecs reset everything. An H.264 keyframe packet must hold an
    IDR slice and an HEVC one a random-access (IRAP) NAL unit: an encoder may flag other I-frames as
    keyframes, after which a frame can still refer to one before it."""
    name = ctx.name
    if name in SPARSE_CODECS or name in INTRA_ONLY_CODECS:
        return lambda packet: True
    if name not in ("h264", "hevc"):
        return None
    extra = bytes(ctx.extradata or b"")
    length_size = None  # Annex B (start codes) unless the extradata is an avcC / hvcC record
    if name == "h264" and len(extra) > 4 and extra[0] == 1:
        length_size = (extra[4] & 3) + 1
    elif name == "hevc" and len(extra) > 21 and extra[0] == 1:
        length_size = (extra[21] & 3) + 1
    if name == "h264":
        return lambda packet: any(b & 0x1F == H264_IDR for b in nal_headers(bytes(packet), length_size))
    return lambda packet: any((b >> 1) & 0x3F in HEVC_IRAP for b in nal_headers(bytes(packet), length_size))


def nal_headers(data: bytes, length_size: int | None) -> Iterator[int]:
    """The first byte of each NAL unit in a packet: length-prefixed (MP4, Matroska) or Annex B."""
    if length_size:
        i = 0
        while i + length_size < len(data):
            n = int.from_bytes(data[i : i + length_size], "big")
            i += length_size
            if n <= 0 or i + n > len(data):
                return
            yield data[i]
            i += n
        return
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        yield data[i + 3]
        i = data.find(b"\x00\x00\x01", i + 3)


def decoder_threads() -> int:
    """Decoder threads for this process; 0 lets FFmpeg choose (one per core, ``thread_type="AUTO"``).

    ``$TRAJSHARD_DECODE_THREADS`` when set; else ``$OMP_NUM_THREADS``, which Ray sets in a worker to the
    CPUs its task was given (1 for a pass-2 task), so workers that fill the cores decode with one thread
    each instead of each starting a thread per core; else 0 (a process outside Ray, like a CLI decode).
    """
    for name in (DECODE_THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(0, int(value))
            except ValueError:
                continue
    return 0


def decode_frames(
    path: str, start_pts: int | None = None, needed_pts: np.ndarray | None = None
) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order, one at a time (never a whole video in memory).

    With ``start_pts`` the decoder first seeks to the keyframe at or before it (a file holding many
    episodes, LeRobot v3, is not decoded from its start for each). With ``needed_pts`` (the frames the
    caller will use; the others may or may not come out) the decoder does less, and every needed frame
    comes out identical to a full decode:

    - AV1 and VP8/VP9 (``SPARSE_CODECS``) without B-frames: only the packets a needed frame depends on
      reach the decoder: from the last keyframe before it, up to it; the packets of a group of
      pictures after its last needed frame are skipped, and nothing after the last needed frame is
      decoded. (LeRobot encodes AV1 with a keyframe every 2 frames, so at 10 Hz from 30 fps about half
      the frames are never decoded.)
    - H.264 and HEVC (``SKIP_NONREF_CODECS``): the packets reach the decoder in decode order, and
      before each one that is not a needed frame's the decoder is set to skip it if it is a
      non-reference frame (``skip_frame="NONREF"``). No frame is predicted from a non-reference one,
      and reference frames are always decoded, so the needed frames do not change. Decoding stops
      once the packets of all needed frames were sent (with B-frames the last needed frame's packet
      can come before others'). HEVC only when its ``hvcC`` header declares one temporal sub-layer:
      with more, a sub-layer non-reference picture may be a reference for a higher sub-layer. From
      the first packet without a PTS on, nothing is skipped.

    Anything else is decoded in full (the caller stops reading after its last needed frame). The
    decoder runs ``decoder_threads()`` threads; the H.264/HEVC skipping holds with frame threads too
    (FFmpeg copies ``skip_frame`` to a frame thread when the packet is submitted, inside ``decode``).
    """
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        threads = decoder_threads()
        if threads:
            stream.codec_context.thread_count = threads
        if start_pts:
            container.seek(int(start_pts), stream=stream, backward=True, any_frame=False)
        ctx = stream.codec_context
        if needed_pts is None or len(needed_pts) == 0:
            yield from container.decode(stream)
            return
        if _skips_nonref(ctx):
            yield from _decode_skipping_nonref(container, stream, needed_pts)
            return
        # has_b_frames is read for SPARSE_CODECS only: open_video may leave it unset for H.264/HEVC
        if ctx.has_b_frames or ctx.name not in SPARSE_CODECS:
            yield from container.decode(stream)
            return
        needed = {int(p) for p in needed_pts}
        last = max(needed)
        pending: list[av.Packet] = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:  # no presentation times to select by: decode everything from here
                needed = None
            if packet.is_keyframe and needed is not None:
                pending = []  # a keyframe needs nothing before it
            pending.append(packet)
            if needed is None or packet.pts in needed:
                for p in pending:
                    yield from ctx.decode(p)
                pending = []
                if needed is not None and packet.pts >= last:
                    break
        yield from ctx.decode(None)


# Decoders (FFmpeg's own) that honour skip_frame="NONREF" by dropping exactly the frames nothing refers
# to: H.264 by nal_ref_idc == 0, HEVC by its sub-layer non-reference NAL unit types.
SKIP_NONREF_CODECS = {"h264", "hevc"}


def _skips_nonref(ctx: av.VideoCodecContext) -> bool:
    """Whether ``decode_frames`` may skip this stream's unneeded non-reference frames."""
    if ctx.name not in SKIP_NONREF_CODECS:
        return False
    if ctx.name == "h264":
        return True
    # HEVCDecoderConfigurationRecord: version 1, numTemporalLayers in bits 3-5 of byte 21. With more
    # than one sub-layer (or no such record: Annex B), a "non-reference" picture may be referenced.
    extradata = ctx.extradata
    return bool(extradata) and len(extradata) >= 23 and extradata[0] == 1 and (extradata[21] >> 3) & 7 == 1


def _decode_skipping_nonref(
    container: av.container.InputContainer, stream: av.VideoStream, needed_pts: np.ndarray
) -> Iterator[av.VideoFrame]:
    """``decode_frames`` for H.264/HEVC: the decoder skips the non-reference frames not needed."""
    ctx = stream.codec_context
    remaining: set[int] | None = {int(p) for p in needed_pts}  # needed frames whose packet is not sent
    mode = ""
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        pts = packet.pts
        if pts is None:  # no presentation times to select by: decode everything from here
            remaining = None
        needed = remaining is None or pts in remaining
        want = "DEFAULT" if needed else "NONREF"
        if want != mode:  # read when the packet is decoded (or handed to a frame thread), inside decode()
            ctx.skip_frame = mode = want
        yield from ctx.decode(packet)
        if remaining is not None and needed:
            remaining.discard(pts)
            if not remaining:
                break
    yield from ctx.decode(None)


class StoredJpeg:
    """A frame a source stores as JPEG bytes (RLDS, compressed HDF5): decoded only when it must be
    resized; when it already has the output size, its bytes go into the shard unchanged."""

    def __init__(self, data: bytes, pts: int) -> None:
        self.jpeg: bytes | None = data
        self.data, self.pts = data, pts
        with Image.open(io.BytesIO(data)) as img:
            self.width, self.height = img.size
            if img.mode != "RGB" or img.format != "JPEG":
                self.jpeg = None  # not an RGB JPEG: re-encoded like any decoded frame

    def to_ndarray(
        self,
        width: int | None = None,
        height: int | None = None,
        format: str = "rgb24",
        interpolation: str = "AREA",
        threads: int | None = None,
    ) -> np.ndarray:
        rgb = np.asarray(Image.open(io.BytesIO(self.data)).convert("RGB"))
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        return frame.to_ndarray(
            width=width or self.width,
            height=height or self.height,
            format=format,
            interpolation=interpolation,
            threads=threads,
        )
