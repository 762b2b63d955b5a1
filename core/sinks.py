"""Where results go: JSON Lines records, and body files under ``--output-dir``.

Body files are named by ``body_name`` (deterministic, injective in practice, never outside DIR)
and written through directory file descriptors with ``O_NOFOLLOW``: a symlink planted anywhere
below DIR is never followed, so no write can land outside it. A worker streams a body into a
temporary file (``.poolfetch-*.tmp``) in the target folder; the main thread renames it into place
once the attempt is known to be good, so a finished name always holds a complete body.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

from poolfetch.core.errors import ConfigError, OutputError, ResultsClosedError
from poolfetch.core.models import FetchResult
from poolfetch.core.shutdown import CancelToken

log = logging.getLogger(__name__)

TEMP_PREFIX = ".poolfetch-"
TEMP_SUFFIX = ".tmp"
#: A partial body kept for ``-C`` is ``.poolfetch-partial-<final name>.part`` beside its final
#: name: hidden, deterministic (the next run finds it), never matched by ``sweep_temps``.
PARTIAL_PREFIX = ".poolfetch-partial-"
PARTIAL_SUFFIX = ".part"
HASH_CHARS = 16
MAX_DIR_DEPTH = 8
MAX_SEGMENT = 80
MAX_STEM = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _safe_segment(segment: str, limit: int) -> str:
    """One path component: only ``[A-Za-z0-9._-]``, no leading dot, not a reserved device name,
    at most ``limit`` bytes. Never contains ``~`` (reserved for the hash of file names)."""
    cleaned = _UNSAFE.sub("_", segment)[:limit]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if cleaned.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    return cleaned


def body_name(url: str, key: str | None = None) -> tuple[tuple[str, ...], str]:
    """The folders and file name, relative to DIR, that the body of ``url`` is saved under.

    ``key`` (the request's state key: method, URL and body digest) replaces the URL in the
    hash, so two requests of one URL (a GET, two POSTs of different bodies) get three files; a
    GET without a body is keyed by its URL, so its name is what it always was.

    ``https://Example.com:8443/a/b/report.json?x=1`` → ``("example.com_8443", "a", "b")`` and
    ``report~<16 hex>.json``. The hex is the start of the SHA-256 of the exact URL string, so
    distinct URL strings get distinct names (a 64-bit hash: collisions are not a practical
    concern at 10^7 URLs); only file names contain ``~``, so a folder and a file never collide,
    and names that differ only in case differ in their lower-case hash as well.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "_").strip("[]")
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}_{port}"
    segments = parts.path.split("/")[1:] or [""]
    folders = [_safe_segment(s, MAX_SEGMENT) for s in segments[:-1] if s][:MAX_DIR_DEPTH]
    leaf = segments[-1]
    stem, dot, ext = leaf.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = leaf, ""
    stem = _safe_segment(stem or "index", MAX_STEM).rstrip(".") or "index"
    ext = "." + _safe_segment(ext, 10).lstrip("_") if ext else (".html" if not leaf else "")
    named = url if key is None else key
    digest = hashlib.sha256(named.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    return (_safe_segment(host.lower(), MAX_SEGMENT), *folders), f"{stem}~{digest}{ext}"


@dataclass(slots=True)
class PendingBody:
    """A complete body in a temporary file, waiting for ``BodyStore.commit``."""

    dir_fd: int
    temp_name: str
    final_name: str
    path: str
    #: A ``-C`` partial file: kept when the run closes (the next run resumes it).
    partial: bool = False


class BodyStore:
    """Creates temporary body files for workers and renames them into place for the main thread.

    It remembers every temporary file not yet committed or discarded, so a shutdown can remove
    them all (no partial file is ever left behind).
    """

    def __init__(self, root: Path) -> None:
        self._root_text = str(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._root_fd = os.open(root, _DIR_FLAGS)
        except OSError as exc:
            hint = " (a symlink is refused: give the real path)" if root.is_symlink() else ""
            raise ConfigError(f"--output-dir {root}: {exc.strerror}{hint}") from exc
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], PendingBody] = {}
        self._closed = False

    def _open_folder(self, folders: tuple[str, ...], create: bool = True) -> int:
        """A descriptor of ``folders`` below DIR, each opened without following a symlink;
        made where missing unless ``create`` is false (then a missing one raises)."""
        fd = os.dup(self._root_fd)
        try:
            for name in folders:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError:
            os.close(fd)
            raise
        return fd

    def create(
        self, url: str, output: str | None = None, key: str | None = None
    ) -> tuple[PendingBody, int]:
        """A new temporary file for ``url``'s body: its record and a writable descriptor.

        ``output`` is a name the input chose (a request object's ``output``, checked by
        ``request.output_problem``: relative, no ``..``, no dot files); otherwise the body
        gets its generated name (``body_name`` of ``url`` and the request ``key``). Both are
        written the same way: folder by folder with ``O_NOFOLLOW``, into a temporary file
        renamed when complete.
        """
        folders, final_name = _place(url, output, key)
        try:
            dir_fd = self._open_folder(folders)
        except OSError as exc:
            raise OutputError(f"cannot create folder for body: {exc.strerror}") from exc
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        temp_name = f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_SUFFIX}"
        pending = PendingBody(
            dir_fd, temp_name, final_name, os.path.join(self._root_text, *folders, final_name)
        )
        return pending, self._open_registered(pending, flags, "cannot create body file")

    def partial_path(self, url: str, output: str | None = None, key: str | None = None) -> str:
        """Where the partial file of a body named as ``create`` names it is: DIR as given
        joined with its name inside."""
        folders, final_name = _place(url, output, key)
        return os.path.join(self._root_text, *folders, _partial_name(final_name))

    def open_partial(
        self, url: str, output: str | None = None, key: str | None = None
    ) -> tuple[PendingBody, int, int]:
        """The partial file of a body (named as ``create`` names it), created if missing: its
        record, a read-write descriptor and its size. Committed and discarded like a temporary
        file; ``release`` and ``close`` leave it in place."""
        folders, final_name = _place(url, output, key)
        try:
            dir_fd = self._open_folder(folders)
        except OSError as exc:
            raise OutputError(f"cannot create folder for body: {exc.strerror}") from exc
        name = _partial_name(final_name)
        path = os.path.join(self._root_text, *folders, final_name)
        pending = PendingBody(dir_fd, name, final_name, path, partial=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = self._open_registered(pending, flags, "cannot open partial body file")
        return pending, fd, os.fstat(fd).st_size

    def _open_registered(self, pending: PendingBody, flags: int, failure: str) -> int:
        """Open ``pending``'s file in its folder and register it, under the lock so that
        ``close()`` never misses a file; on failure the folder descriptor is closed."""
        with self._lock:
            try:
                if self._closed:
                    raise OutputError("run is shutting down")
                fd = os.open(pending.temp_name, flags, 0o644, dir_fd=pending.dir_fd)
            except OSError as exc:
                os.close(pending.dir_fd)
                raise OutputError(f"{failure}: {exc.strerror}") from exc
            except OutputError:
                os.close(pending.dir_fd)
                raise
            self._pending[(pending.dir_fd, pending.temp_name)] = pending
        return fd

    def partial_size(self, url: str, output: str | None = None, key: str | None = None) -> int:
        """Bytes in a body's partial file (0 when there is none); follows no symlink."""
        folders, final_name = _place(url, output, key)
        try:
            dir_fd = self._open_folder(folders, create=False)
        except OSError:
            return 0
        try:
            info = os.stat(_partial_name(final_name), dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return 0
        finally:
            os.close(dir_fd)
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def remove_partial(self, path: str) -> None:
        """Remove the partial file at ``path`` (as ``partial_path`` gave it) if it is there and
        below DIR; follows no symlink."""
        root = os.path.join(self._root_text, "")
        *folders, name = path[len(root) :].split("/") if path.startswith(root) else [""]
        if not (name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX)):
            return
        try:
            dir_fd = self._open_folder(tuple(folders), create=False)
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        os.close(dir_fd)

    def release(self, pending: PendingBody) -> None:
        """Forget a partial file without removing it: it stays for the next run to resume."""
        with self._lock:
            if self._pending.pop((pending.dir_fd, pending.temp_name), None) is None:
                return
        os.close(pending.dir_fd)

    def commit(self, pending: PendingBody) -> str:
        """Rename the temporary file to its final name (atomic; replaces an older body)."""
        with self._lock:
            if self._pending.pop((pending.dir_fd, pending.temp_name), None) is None:
                raise OutputError("body file was already discarded")
        try:
            os.rename(
                pending.temp_name,
                pending.final_name,
                src_dir_fd=pending.dir_fd,
                dst_dir_fd=pending.dir_fd,
            )
        except OSError as exc:
            _unlink_quietly(pending)
            raise OutputError(f"cannot save body as {pending.path}: {exc.strerror}") from exc
        finally:
            os.close(pending.dir_fd)
        return pending.path

    def discard(self, pending: PendingBody) -> None:
        """Remove an uncommitted temporary file (idempotent)."""
        with self._lock:
            if self._pending.pop((pending.dir_fd, pending.temp_name), None) is None:
                return
        _unlink_quietly(pending)
        os.close(pending.dir_fd)

    def sweep_stale_temps(self) -> int:
        """Remove temporary files a killed run left below DIR (see ``sweep_temps``)."""
        return sweep_temps(self._root_text)

    def close(self) -> None:
        """Refuse new files and remove every temporary one still pending (partial files of
        ``-C`` stay: the next run resumes them)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            leftovers = list(self._pending.values())
            self._pending.clear()
        for pending in leftovers:
            if not pending.partial:
                _unlink_quietly(pending)
            os.close(pending.dir_fd)
        os.close(self._root_fd)


def sweep_temps(root: str) -> int:
    """Remove ``.poolfetch-*.tmp`` files below ``root`` left by a process that was killed.

    Only called when no process of the run can still be writing one: when a run resumes an
    interrupted one, and when a shared run's coordinator has every result. Symlinks are not
    followed. Returns how many were removed.
    """
    removed = 0
    for folder, _, files in os.walk(root, followlinks=False):
        for name in files:
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


def _place(url: str, output: str | None, key: str | None) -> tuple[tuple[str, ...], str]:
    """Folders and file name of a body: the input's ``output``, else ``body_name``."""
    if output is not None:
        *parts, final_name = output.split("/")
        return tuple(parts), final_name
    return body_name(url, key)


def _partial_name(final_name: str) -> str:
    return f"{PARTIAL_PREFIX}{final_name}{PARTIAL_SUFFIX}"


def _unlink_quietly(pending: PendingBody) -> None:
    with contextlib.suppress(OSError):
        os.unlink(pending.temp_name, dir_fd=pending.dir_fd)


class ResultSink(Protocol):
    """Where finished results go: JSON Lines here, a Redis results stream for a worker."""

    def write(self, result: FetchResult) -> None: ...

    def flush(self) -> None:
        """Hand what was written since the last call to the reader."""
        ...

    def close(self) -> None: ...


def write_or_stop(sink: ResultSink, result: FetchResult, cancel: CancelToken) -> None:
    """Write ``result``; if the reader of the results went away, cancel the run as SIGPIPE
    (exit 141) instead of failing: the state stays interrupted and the next run resumes."""
    _or_stop(lambda: sink.write(result), cancel)


def flush_or_stop(sink: ResultSink, cancel: CancelToken) -> None:
    """``sink.flush()``, a reader gone away handled as in ``write_or_stop``."""
    _or_stop(sink.flush, cancel)


def _or_stop(action: Callable[[], None], cancel: CancelToken) -> None:
    try:
        action()
    except ResultsClosedError as exc:
        log.warning("%s: stopping", exc)
        cancel.cancel(signal.SIGPIPE)


class JsonlSink:
    """Writes one JSON object per line; ``flush`` hands them to the reader.

    The runner flushes once per turn of its loop (the records of every answer it just handled),
    before it waits again, so a pipeline sees each record within that turn, and a busy run
    makes one system call per batch of records instead of one per record (each call also hands
    the GIL to the worker threads and waits to get it back).

    When the reader goes away (``poolfetch run … | head -1``), the first write that fails raises
    ``ResultsClosedError`` so the run can stop as if interrupted; later writes do nothing.
    """

    def __init__(self, stream: TextIO, close: bool) -> None:
        self._stream = stream
        self._close = close
        self._reader_gone = False
        self._unflushed = False

    def write(self, result: FetchResult) -> None:
        self.write_record(result.to_record())

    def write_record(self, record: dict[str, Any]) -> None:
        if self._reader_gone:
            return
        try:
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        except BrokenPipeError as exc:  # a full buffer is written out by ``write``
            self._gone(exc)
        self._unflushed = True

    def flush(self) -> None:
        if self._reader_gone or not self._unflushed:
            return
        self._unflushed = False
        try:
            self._stream.flush()
        except BrokenPipeError as exc:
            self._gone(exc)

    def _gone(self, exc: BrokenPipeError) -> None:
        self._reader_gone = True
        self._silence()
        raise ResultsClosedError("the reader of the results went away (broken pipe)") from exc

    def _silence(self) -> None:
        """Point the stream's descriptor at /dev/null, so no later flush fails again."""
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            if self._close:
                self._stream.close()
            else:
                self._stream.flush()
