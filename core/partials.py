"""Body writers under ``-o DIR``: temporary files, or (``-C``) partial files kept across runs.

``TempBodies`` is the plain case: each body goes to a fresh temporary file, renamed into place
when complete and removed when cut off. ``PartialBodies`` (``--continue``) writes each body to
its URL's partial file instead (``sinks.PARTIAL_PREFIX``, hidden, beside the final name) and
keeps it when the body is cut off, so the next attempt, or the next run, asks only for the rest.

The state must know a partial file's validator before the file is worth keeping, or a
``kill -9`` would leave bytes nobody can vouch for. So before a body's second piece is written
the worker hands a ``PartialNotice`` to the main thread (the only writer of the state) and waits
until it is committed; a body that arrives in one piece never costs this round trip. When a
body is cut off, its file is ``fsync``-ed before the state records how many bytes it holds;
that is the only ``fsync`` (docs/design.md, "Partial bodies", says why, with its cost). On
resume the file's size is what counts: after a ``kill -9`` every byte written is in the page
cache, so it is never less than what the state last recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from poolfetch.core.bodies import BodyWriter, ResumePoint, keeps_partial, resume_validator
from poolfetch.core.errors import OutputError
from poolfetch.core.models import FetchJob
from poolfetch.core.sinks import BodyStore, PendingBody

#: Longest a worker waits for the main thread to record a partial file (it goes on without).
REGISTER_TIMEOUT_S = 10.0
_HASH_READ = 1 << 20


@dataclass(slots=True)
class PartialNotice:
    """A worker tells the main thread about the partial file of the request keyed ``key``
    (the state's key): ``kind`` is ``started`` (record it before more is written; ``done`` is
    set once committed), ``kept`` (cut off, ``held`` bytes fsynced) or ``dropped`` (removed:
    forget it)."""

    kind: str
    key: str
    path: str = ""
    validator: str = ""
    held: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class _FileWriter:
    """Writes one body to an open descriptor and hashes it (the record's ``sha256``)."""

    def __init__(self, pending: PendingBody, fd: int, offset: int) -> None:
        self._pending = pending
        self._fd = fd
        self._offset = offset
        self._size = offset
        self._hasher = hashlib.sha256()
        self.pieces = 0

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise OutputError(f"cannot write body: {exc.strerror}") from exc
        self._size += len(chunk)
        self.pieces += 1

    def hash_prefix(self) -> None:
        """Hash the bytes already held (a resume), once, so the digest is the whole body's."""
        if not self._offset:
            return
        left = self._offset
        position = 0
        while left > 0:
            data = os.pread(self._fd, min(_HASH_READ, left), position)
            if not data:
                raise OutputError("partial body file shrank while resuming")
            self._hasher.update(data)
            position += len(data)
            left -= len(data)

    def digest(self) -> str:
        return self._hasher.hexdigest()

    def close(self, sync: bool = False) -> None:
        try:
            if sync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)


class _TempWriter(_FileWriter):
    def __init__(self, store: BodyStore, pending: PendingBody, fd: int) -> None:
        super().__init__(pending, fd, 0)
        self._store = store

    def finish(self) -> tuple[PendingBody, str]:
        self.close()
        return self._pending, self.digest()

    def abort(self, error: BaseException) -> None:
        with contextlib.suppress(OSError):
            self.close()
        self._store.discard(self._pending)


class TempBodies:
    """Each body in a fresh temporary file; nothing is ever resumed."""

    def __init__(self, store: BodyStore) -> None:
        self._store = store

    def begin(self, job: FetchJob) -> ResumePoint | None:
        return None

    def end(self, job: FetchJob) -> None:
        return None

    def open(self, job: FetchJob, headers: Mapping[str, str], offset: int) -> BodyWriter:
        return _temp_writer(self._store, job)

    def drop(self, job: FetchJob) -> None:
        return None


def _temp_writer(store: BodyStore, job: FetchJob) -> _TempWriter:
    request = job.request
    pending, fd = store.create(job.url, request.output, request.key(job.url))
    return _TempWriter(store, pending, fd)


class _PartialWriter(_FileWriter):
    def __init__(
        self,
        owner: PartialBodies,
        key: str,
        pending: PendingBody,
        fd: int,
        offset: int,
        validator: str | None,
        replacing: bool,
    ) -> None:
        super().__init__(pending, fd, offset)
        self._owner = owner
        self._key = key
        self._validator = validator
        # resuming: the state already holds this file under this validator
        self._recorded = offset > 0
        # the state holds an older partial of this URL (another validator): it must be
        # replaced before the first new byte lands, not after the first piece
        self._replacing = replacing and offset == 0

    @property
    def path(self) -> str:
        return os.path.join(os.path.dirname(self._pending.path), self._pending.temp_name)

    def write(self, chunk: bytes) -> None:
        if not self._recorded and (self.pieces == 1 or self._replacing):
            self._replacing = False
            if self._validator is not None:
                self._recorded = self._owner.record_started(self._key, self.path, self._validator)
            elif self.pieces == 0:
                self._owner.record_dropped(self._key)
        super().write(chunk)

    def finish(self) -> tuple[PendingBody, str]:
        self.close()  # not synced: as any body renamed into place (docs/design.md)
        self._owner.forget(self._key)
        return self._pending, self.digest()

    def abort(self, error: BaseException) -> None:
        keep = self._recorded and keeps_partial(error)
        try:
            self.close(sync=keep)
        except OSError:
            keep = False
        if keep:
            self._owner.kept(self._key, self._pending, self.path, self.size)
        else:
            self._owner.dropped(self._key, self._pending)


class PartialBodies:
    """``-C``: bodies in partial files that outlive the run; see the module docstring.

    Partial files are keyed like the state's rows (``request.key``: method, URL, body) and
    named like the body they become. Only GET bodies are resumable (``Range`` means nothing
    to other methods); the rest are written as ``TempBodies`` writes them. ``expect`` (main
    thread, at admission) and ``record_started`` (workers) tell it which validator each
    partial file was received under; ``begin`` offers a resume only for a file that exists and
    whose validator is known. One attempt at a time owns a request's partial file (the same
    URL twice in a list, both in flight): the other writes a temporary file.
    """

    def __init__(self, store: BodyStore, notify: Callable[[PartialNotice], None]) -> None:
        self._store = store
        self._notify = notify
        self._lock = threading.Lock()
        self._validators: dict[str, str] = {}
        self._owners: dict[str, int] = {}  # key -> the worker thread whose attempt owns it

    def _names(self, job: FetchJob) -> tuple[str, str | None, str]:
        request = job.request
        return job.url, request.output, request.key(job.url)

    def expect(self, job: FetchJob, stored: tuple[str, str, int] | None) -> None:
        """What the state holds for ``job`` (path, validator, bytes held): a partial file
        under this DIR is offered for resuming; one under another DIR is not."""
        if stored is not None and stored[0] == self._store.partial_path(*self._names(job)):
            with self._lock:
                self._validators[self._names(job)[2]] = stored[1]

    def begin(self, job: FetchJob) -> ResumePoint | None:
        if job.sending.method != "GET":
            return None
        key = self._names(job)[2]
        me = threading.get_ident()
        with self._lock:
            if self._owners.setdefault(key, me) != me:
                return None  # another attempt of the same request owns its partial file
            validator = self._validators.get(key)
        if validator is None:
            return None
        have = self._store.partial_size(*self._names(job))
        return ResumePoint(have, validator) if have > 0 else None

    def end(self, job: FetchJob) -> None:
        key = self._names(job)[2]
        me = threading.get_ident()
        with self._lock:
            if self._owners.get(key) == me:
                del self._owners[key]

    def open(self, job: FetchJob, headers: Mapping[str, str], offset: int) -> BodyWriter:
        url, output, key = self._names(job)
        with self._lock:
            owner = job.sending.method == "GET" and self._owners.get(key) == threading.get_ident()
        if not owner:  # offset is 0: ``begin`` offered no resume
            return _temp_writer(self._store, job)
        pending, fd, have = self._store.open_partial(url, output, key)
        try:
            if have < offset:
                raise OutputError("partial body file shrank while resuming")
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            os.close(fd)
            self._store.discard(pending)
            raise OutputError(f"cannot prepare partial body file: {exc.strerror}") from exc
        except OutputError:
            os.close(fd)
            self._store.discard(pending)
            raise
        known = self._known(key)
        validator = resume_validator(headers) if offset == 0 else known
        if offset == 0:
            self.forget(key)  # the old partial (if any) is being overwritten
        writer = _PartialWriter(self, key, pending, fd, offset, validator, known is not None)
        try:
            writer.hash_prefix()
        except BaseException:
            writer.abort(OutputError("cannot read partial body file"))
            raise
        return writer

    def drop(self, job: FetchJob) -> None:
        self.forget(self._names(job)[2])
        self._store.remove_partial(self._store.partial_path(*self._names(job)))
        self._notify(PartialNotice("dropped", self._names(job)[2]))

    # -- used by the writers ------------------------------------------------------------

    def _known(self, key: str) -> str | None:
        with self._lock:
            return self._validators.get(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._validators.pop(key, None)

    def record_started(self, key: str, path: str, validator: str) -> bool:
        """Have the main thread record the partial file; True once it is committed."""
        notice = PartialNotice("started", key, path, validator)
        self._notify(notice)
        if not notice.done.wait(REGISTER_TIMEOUT_S):
            return False
        with self._lock:
            self._validators[key] = validator
        return True

    def record_dropped(self, key: str) -> None:
        """Have the main thread forget the partial file's old row, and wait for it."""
        notice = PartialNotice("dropped", key)
        self._notify(notice)
        notice.done.wait(REGISTER_TIMEOUT_S)

    def kept(self, key: str, pending: PendingBody, path: str, held: int) -> None:
        self._store.release(pending)
        self._notify(PartialNotice("kept", key, path, held=held))

    def dropped(self, key: str, pending: PendingBody) -> None:
        self.forget(key)
        self._store.discard(pending)
        self._notify(PartialNotice("dropped", key))
