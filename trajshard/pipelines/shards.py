"""Shard files: size-capped, reproducible tar parts, atomic metadata writes, reading samples back.

A pass-2 task writes the samples of its episode group into parts
``shards/<split>-g<group:06d>-p<part:04d>.tar.part``; each part is written to a temporary name and
renamed when complete. At commit the driver renames the parts, in (group, part) order, to
``shards/<split>-%06d.tar``. Tar members are written by :class:`TarStream` exactly as
``webdataset.TarWriter`` would (fixed mtime 0, owner and mode, sorted fields per sample), so bytes
depend only on the samples.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from array import array
from dataclasses import dataclass, field

from trajshard.pipelines.tarstream import TarStream, sample_bytes
from trajshard.storage import FILE_MODE, Store, redact

BLOCK = 512
RECORD = 20 * BLOCK


class ShardWriteError(RuntimeError):
    """The output cannot be written (disk full, permissions): the job fails, no episode is blamed."""


@dataclass
class PartInfo:
    name: str  # file name under shards/
    samples: int = 0
    bytes: int = 0
    sha256: str = ""
    episodes: list[str] = field(default_factory=list)  # in order of first sample
    seen: set[str] = field(default_factory=set, repr=False, compare=False)


WRITE_BUFFER = 1 << 20  # bytes a part collects before a write(2): a sample (~30 KB at 224 px) is not one


class HashingFile:
    """A write-only file that hashes (sha256) and counts the bytes on their way to disk."""

    def __init__(self, f) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class PartWriter:
    """Writes samples into size-capped tar parts of one episode group, under ``shards/`` of a store.

    A part is written to a temporary local file (in ``shards/`` itself for a local store, so it is
    renamed into place; in the temp directory for an object store, then uploaded) and hashed while
    it is written."""

    def __init__(self, store: Store, split: str, group: int, cap_bytes: int) -> None:
        self.store = store
        store.makedirs("shards")
        self.tmp_dir = None if store.remote else store.local("shards")
        self.prefix = f"{split}-g{group:06d}"
        if self.tmp_dir is not None:
            for stale in self.tmp_dir.glob(f".{self.prefix}-*.tmp"):  # an earlier attempt of this group died
                stale.unlink(missing_ok=True)
        self.cap = cap_bytes
        self.parts: list[PartInfo] = []
        self._tmp: str | None = None
        self._file: HashingFile | None = None
        self._writer: TarStream | None = None

    def write(self, sample: dict[str, bytes | str], episode_id: str) -> None:
        try:
            self._write(sample, episode_id)
        except OSError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: OSError) -> ShardWriteError:
        """The error that ends the task: a full disk said as such, with the part being written."""
        part = f"shards/{self.parts[-1].name}" if self.parts else "shards/"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return ShardWriteError(
                f"the disk holding {redact(self.store.location)} is full ({exc.strerror}) writing {part}"
            )
        return ShardWriteError(f"cannot write {part} under {redact(self.store.location)}: {exc}")

    def _write(self, sample: dict[str, bytes | str], episode_id: str) -> None:
        chunk = sample_bytes(sample)
        if (
            self._writer is not None
            and self.parts[-1].samples
            and _closed_size(self._writer.offset + len(chunk)) > self.cap
        ):
            self._close_part()
        if self._writer is None:
            self._open_part()
        self._writer.write_encoded(chunk)
        part = self.parts[-1]
        part.samples += 1
        if episode_id not in part.seen:
            part.seen.add(episode_id)
            part.episodes.append(episode_id)

    def close(self) -> list[PartInfo]:
        try:
            if self._writer is not None:
                self._close_part()
        except OSError as exc:
            raise self._failed(exc) from exc
        return self.parts

    def abort(self) -> None:
        """Drop the part being written and every part already closed by this writer."""
        if self._writer is not None:
            self._discard()
        for p in self.parts:
            self.store.delete(f"shards/{p.name}")
        self.parts = []

    def _open_part(self) -> None:
        name = f"{self.prefix}-p{len(self.parts):04d}.tar.part"
        fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.tmp_dir)
        os.fchmod(fd, FILE_MODE)
        self._file = HashingFile(os.fdopen(fd, "wb", buffering=WRITE_BUFFER))
        self._writer = TarStream(self._file)
        self.parts.append(PartInfo(name))

    def _close_part(self) -> None:
        try:
            self._writer.close()
            self._file.close()
            self._writer = None
            part = self.parts[-1]
            part.bytes, part.sha256 = self._file.bytes, self._file.sha256.hexdigest()
            self.store.put_file(self._tmp, f"shards/{part.name}")
        except BaseException:
            self._discard()  # a failed close (a full disk) leaves no open file behind
            raise
        finally:
            if os.path.exists(self._tmp):  # a failed close or upload leaves no local temporary
                os.unlink(self._tmp)

    def _discard(self) -> None:
        """Close and delete the part being written, whatever the disk says: on a full disk closing
        fails too (the tar's end blocks, the buffer's flush), and the temporary must still go."""
        writer, file, self._writer = self._writer, self._file, None
        for close in (writer.close, file.close) if writer is not None else (file.close,):
            try:
                close()
            except (OSError, ValueError):  # ValueError: already closed by a failed close
                pass
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)


class SampleSpill:
    """Samples parked in a temporary local file so a shuffled group can write them in another order.

    Memory per sample stays small and flat: the sample's start offset, a shared tuple of its member
    names, the member lengths packed in one bytes object, and shared references to its episode ids."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory, prefix="trajshard-spill-")
        self.index: list[
            tuple[str, str, int, tuple[str, ...], bytes]
        ] = []  # part, source, start, names, lengths
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._end = 0

    def add(self, sample: dict[str, bytes | str], episode_id: str, source_episode: str) -> None:
        names = tuple(sample)
        names = self._names.setdefault(names, names)
        start, lengths = self._end, array("Q")
        for value in sample.values():
            data = value.encode() if isinstance(value, str) else value
            self._file.write(data)
            lengths.append(len(data))
            self._end += len(data)
        self.index.append((episode_id, source_episode, start, names, lengths.tobytes()))

    def drop_source_episode(self, source_episode: str) -> None:
        """Forget every sample of a source episode (all its gap-split parts)."""
        self.index = [entry for entry in self.index if entry[1] != source_episode]

    def read(self, i: int) -> tuple[dict[str, bytes | str], str]:
        episode_id, _, offset, names, packed = self.index[i]
        self._file.seek(offset)
        sample: dict[str, bytes | str] = {}
        for name, n in zip(names, array("Q", packed), strict=True):
            data = self._file.read(n)
            sample[name] = data.decode() if name == "__key__" else data
        self._file.seek(self._end)
        return sample, episode_id

    def close(self) -> None:
        self._file.close()


def _closed_size(members: int) -> int:
    """Size of a tar holding ``members`` bytes of headers and data, once closed (end blocks + record)."""
    return -(-(members + 2 * BLOCK) // RECORD) * RECORD


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def promote_parts(store: Store, split: str, parts: list[PartInfo]) -> list[PartInfo]:
    """Rename parts (already in group, part order) to ``<split>-%06d.tar``; return them renamed."""
    out = []
    for i, p in enumerate(parts):
        final = shard_name(split, i)
        store.move(f"shards/{p.name}", f"shards/{final}")
        out.append(PartInfo(final, p.samples, p.bytes, p.sha256, list(p.episodes)))
    return out


def clean_temporaries(store: Store, keep: set[str] = frozenset()) -> None:
    """Remove what a job that did not finish left in ``shards/`` (temporary files, parts, and shards
    promoted by a commit that never wrote meta/info.json), except the names in ``keep``. Called only
    when OUT holds no finished dataset."""
    for name in store.list("shards"):
        if name in keep:
            continue
        if (name.startswith(".") and name.endswith(".tmp")) or name.endswith((".tar.part", ".tar")):
            store.delete(f"shards/{name}")
