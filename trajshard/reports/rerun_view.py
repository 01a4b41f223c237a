"""``trajshard inspect OUT --episode ID --rerun FILE.rrd``: one episode as a Rerun recording, the way
LeRobot's dataset viewer shows an episode: every stream on one timeline, scrubbed together.

Entities (one row per tick on the ``tick`` timeline, the sample's step, and ``time``, its episode
time in seconds), names escaped with ``rr.escape_entity_path_part``:

- ``cameras/<camera>``: the sample's JPEG (or PNG) as an ``EncodedImage``
- ``state/<name>``, ``action/<name>``: one ``Scalars`` series per dimension, named from info.json
- ``tokens``: ``tokens.npy`` as a ``Tensor`` (bins, a chunk of bins, or FAST ids of a chunk)
- ``token_bins/<name>``: per-dimension tokenizers only, the current step's bin of each dimension
- ``instruction``: the instruction in force, a ``TextDocument``
- ``instruction/changes``: a ``TextLog`` row at the first tick of every instruction segment
- ``episode``: static, the text summary ``trajshard inspect`` prints

A default blueprint lays the views out (cameras, state and action plots, tokens and instruction).

The episode comes from ``reports.episode.load_episode`` (shards confined to OUT/shards and read by
the checked reader); rerun-sdk is the optional ``rerun`` extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajshard.io import write_bytes_atomic
from trajshard.reports.episode import segments, summary

INSTALL_HINT = "--rerun needs the optional rerun-sdk: pip install 'trajshard[rerun]'"
TICK, TIME = "tick", "time"


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message says which extra installs it."""


def rerun_module():
    """The ``rerun`` module, or :class:`MissingExtra` with the install line."""
    try:
        import rerun
    except ImportError as exc:
        raise MissingExtra(INSTALL_HINT) from exc
    return rerun


def write_rrd(ep: dict, path: str | Path) -> None:
    """Write the episode's recording to ``path`` atomically (temp name, then rename)."""
    write_bytes_atomic(path, episode_rrd(ep))


def episode_rrd(ep: dict) -> bytes:
    """The episode as the bytes of an .rrd file (application ``trajshard``, recording id the part id)."""
    rr = rerun_module()
    rec = rr.RecordingStream("trajshard", recording_id=ep["episode"])
    rec.set_log_time_enabled(False)  # only the episode's own timelines, no wall clock
    memory = rec.memory_recording()
    rec.send_blueprint(blueprint(rr, ep))
    index = [
        rr.TimeColumn(TICK, sequence=np.asarray(ep["steps"], dtype=np.int64)),
        rr.TimeColumn(TIME, duration=np.asarray(ep["times"], dtype=np.float64)),
    ]
    _cameras(rr, rec, ep, index)
    for key in ("state", "action"):
        _series(rr, rec, key, ep[key], ep[f"{key}_names"], index)
    if ep["tokens"] is not None:
        _series(rr, rec, "token_bins", ep["tokens"], ep["action_names"], index)
    _tokens(rr, rec, ep)
    _instructions(rr, rec, ep, index)
    rec.log("episode", rr.TextDocument(summary(ep)), static=True)
    rec.flush()
    data = memory.drain_as_bytes()
    rec.disconnect()
    return data


def blueprint(rr, ep: dict):
    """The default layout the viewer opens with: cameras on top, state and action plots, then the
    tokens beside the instruction and its changes."""
    import rerun.blueprint as rrb

    cams = [rrb.Spatial2DView(origin=entity(rr, "cameras", c), name=c) for c in ep["cameras"]]
    plots = [rrb.TimeSeriesView(origin=f"/{k}", name=k) for k in ("state", "action")]
    if ep["tokens"] is not None:
        plots.append(rrb.TimeSeriesView(origin="/token_bins", name="token bins"))
    text = [
        rrb.TensorView(origin="/tokens", name="tokens"),
        rrb.TextDocumentView(origin="/instruction", contents="$origin", name="instruction"),
        rrb.TextLogView(origin="/instruction/changes", name="instruction changes"),
        rrb.TextDocumentView(origin="/episode", name="episode"),
    ]
    rows = ([rrb.Horizontal(*cams)] if cams else []) + [rrb.Horizontal(*plots), rrb.Horizontal(*text)]
    return rrb.Blueprint(rrb.Vertical(*rows), collapse_panels=False)


def entity(rr, *parts: str) -> str:
    return "/".join(rr.escape_entity_path_part(p) for p in parts)


def _cameras(rr, rec, ep: dict, index: list) -> None:
    for cam in ep["cameras"]:
        blobs = ep["images"][cam]
        media = ["image/png" if b[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg" for b in blobs]
        rec.send_columns(
            entity(rr, "cameras", cam),
            indexes=index,
            columns=rr.EncodedImage.columns(blob=blobs, media_type=media),
        )


def _series(rr, rec, root: str, values: np.ndarray, names: list[str], index: list) -> None:
    """One Scalars entity per dimension (names are distinct: ``episode.dim_names`` makes them so)."""
    for d in range(values.shape[1]):
        column = rr.Scalars.columns(scalars=np.asarray(values[:, d], dtype=np.float64))
        rec.send_columns(entity(rr, root, names[d]), indexes=index, columns=column)


def _tokens(rr, rec, ep: dict) -> None:
    for step, t, seq in zip(ep["steps"], ep["times"], ep["token_seqs"], strict=True):
        rec.set_time(TICK, sequence=int(step))
        rec.set_time(TIME, duration=float(t))
        rec.log("tokens", rr.Tensor(np.asarray(seq)))
    rec.reset_time()


def _instructions(rr, rec, ep: dict, index: list) -> None:
    rec.send_columns("instruction", indexes=index, columns=rr.TextDocument.columns(text=ep["instructions"]))
    segs = segments(ep)
    starts = np.array([a for a, _, _ in segs], dtype=np.int64)
    change_index = [
        rr.TimeColumn(TICK, sequence=np.asarray(ep["steps"], dtype=np.int64)[starts]),
        rr.TimeColumn(TIME, duration=np.asarray(ep["times"], dtype=np.float64)[starts]),
    ]
    texts = [
        f"segment {k + 1}/{len(segs)} from step {ep['steps'][a]}: {text}"
        for k, (a, _, text) in enumerate(segs)
    ]
    rec.send_columns(
        "instruction/changes",
        indexes=change_index,
        columns=rr.TextLog.columns(text=texts, level=["INFO"] * len(texts)),
    )
