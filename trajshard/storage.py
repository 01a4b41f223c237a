"""Where a job reads and writes: a local directory or an object-store prefix, through ``pyarrow.fs``.

A location is a local path, a ``file://`` URI, or a URI ``pyarrow.fs.FileSystem.from_uri`` knows
(``s3://bucket/prefix``, ``gs://bucket/prefix``, ``hdfs://...``). Credentials and the endpoint of an
S3-compatible server come from the environment the AWS SDK reads (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``), or from the URI itself
(``s3://KEY:SECRET@bucket/prefix?endpoint_override=host:port&scheme=http``). Messages never print a
URI's secret (:func:`redact`).

Writes are atomic on both: locally a temporary name in the same directory, renamed; on an object
store an object appears only when its upload completes, so it is written under its final key.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pfs

CHUNK = 8 << 20
FILE_MODE = 0o644
PROBE_RETRY_S = 15  # how long the first request to a gs:// store retries (GCS's own default: 15 min)
_SECRET_RE = re.compile(r"(://)[^?#]*@")  # up to the last @ before a query: secrets may hold "/"


class StorageError(ValueError):
    """A location that cannot be opened or does not answer; its message is one line, secret redacted."""


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message, secrets redacted."""
    lines = redact(str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@contextmanager
def atomic_output(path: str | os.PathLike, make_parents: bool = True) -> Iterator[BinaryIO]:
    """A local file opened for writing under a hidden temporary name in its directory, renamed to
    ``path`` (mode 0o644) when the block ends, deleted when it raises. With ``make_parents`` False,
    a missing directory is an error instead of being made."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_remote(location: str | os.PathLike) -> bool:
    text = str(location)
    return "://" in text and not text.startswith("file://")


def redact(location: str | os.PathLike) -> str:
    """The location without a ``KEY:SECRET@`` part."""
    return _SECRET_RE.sub(r"\1***@", str(location))


def local_path(location: str | os.PathLike) -> Path:
    text = str(location)
    return Path(text[len("file://") :] if text.startswith("file://") else text).resolve()


def resolve(location: str | os.PathLike) -> tuple[pfs.FileSystem, str]:
    """(file system, path on it) of a location."""
    if not is_remote(location):
        return pfs.LocalFileSystem(), str(local_path(location))
    try:
        fs, path = pfs.FileSystem.from_uri(str(location))
    except (ValueError, OSError) as exc:  # pyarrow repeats the URI, secret included
        raise StorageError(f"cannot open {redact(location)}: {_one_line(exc)}") from None
    return fs, path.rstrip("/")


def _probe_fs(location: str) -> pfs.FileSystem:
    """The file system to ask a first question with: a gs:// store retries for ``PROBE_RETRY_S``, not
    GCS's 15 minutes, so a store without network or credentials fails in seconds."""
    if not location.startswith("gs://") or "retry_limit_seconds" in location:
        return resolve(location)[0]
    return resolve(location + ("&" if "?" in location else "?") + f"retry_limit_seconds={PROBE_RETRY_S}")[0]


class Store:
    """A directory (local or on an object store) that a job reads or writes by relative names."""

    def __init__(self, location: str | os.PathLike) -> None:
        self.location = str(location)
        self.fs, self.root = resolve(location)
        self.remote = is_remote(location)

    def __repr__(self) -> str:
        return f"Store({redact(self.location)!r})"

    def path(self, rel: str = "") -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def local(self, rel: str = "") -> Path:
        """The local path of a name (local stores only)."""
        assert not self.remote, "a remote store has no local path"
        return Path(self.path(rel))

    def probe(self) -> bool:
        """Whether the root is a directory (a prefix with objects under it), asked once before a job
        works with the store; StorageError (one line) when the store does not answer: no network, no
        credentials, a bucket or repository that cannot be reached."""
        if not self.remote:
            return self.is_dir()
        try:
            return _probe_fs(self.location).get_file_info(self.root).type == pfs.FileType.Directory
        except Exception as exc:  # noqa: BLE001 - fsspec stores (hf://) raise their own HTTP errors
            raise StorageError(f"cannot reach {redact(self.location)}: {_one_line(exc)}") from None

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pfs.FileType.NotFound

    def is_dir(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pfs.FileType.Directory

    def makedirs(self, rel: str = "") -> None:
        if not self.remote:  # object stores have no directories to make
            os.makedirs(self.path(rel), exist_ok=True)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_file(self.path(rel)) as f:  # random-access: buffered, fast on S3
            return f.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole file atomically."""
        if self.remote:
            with self.fs.open_output_stream(self.path(rel)) as f:
                f.write(data)
            return
        with atomic_output(self.path(rel)) as f:
            f.write(data)

    def put_file(self, local_file: str | os.PathLike, rel: str) -> None:
        """Move a finished local file to ``rel``: a rename on a local store (the file must be on the
        same file system), an upload then delete of the local file on a remote one."""
        if not self.remote:
            os.replace(local_file, self.path(rel))
            return
        with open(local_file, "rb") as src, self.fs.open_output_stream(self.path(rel)) as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
        os.unlink(local_file)

    def get_file(self, rel: str, local_file: str | os.PathLike) -> None:
        """Copy ``rel`` to a local file (written to a temporary name, then renamed)."""
        with atomic_output(local_file) as dst, self.fs.open_input_file(self.path(rel)) as src:
            while chunk := src.read(CHUNK):
                dst.write(chunk)

    def digest(self, rel: str) -> tuple[int, str]:
        """(bytes, sha256 hex) of a file, streamed."""
        import hashlib

        h, n = hashlib.sha256(), 0
        with self.fs.open_input_file(self.path(rel)) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
        return n, h.hexdigest()

    def move(self, src: str, dst: str) -> None:
        """Rename (local) or server-side copy then delete (object store)."""
        self.fs.move(self.path(src), self.path(dst))

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass

    def delete_dir(self, rel: str) -> None:
        if not self.is_dir(rel):
            return
        if self.remote:
            self.fs.delete_dir(self.path(rel))
        else:
            shutil.rmtree(self.path(rel))

    def list(self, rel: str = "") -> list[str]:
        """Names of the files directly under ``rel`` (none when it does not exist), sorted."""
        selector = pfs.FileSelector(self.path(rel), allow_not_found=True, recursive=False)
        return sorted(
            os.path.basename(i.path) for i in self.fs.get_file_info(selector) if i.type == pfs.FileType.File
        )

    def list_dirs(self, rel: str = "") -> list[str]:
        selector = pfs.FileSelector(self.path(rel), allow_not_found=True, recursive=False)
        return sorted(
            os.path.basename(i.path.rstrip("/"))
            for i in self.fs.get_file_info(selector)
            if i.type == pfs.FileType.Directory
        )

    def download_tree(self, dest: str | os.PathLike) -> Path:
        """Copy everything under the store to a local directory (for commands that read locally)."""
        pfs.copy_files(
            self.root, str(dest), source_filesystem=self.fs, destination_filesystem=pfs.LocalFileSystem()
        )
        return Path(dest)
