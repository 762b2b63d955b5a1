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
    """A worker tells the main thread about a partial file: ``kind`` is ``started`` (record
    it before more is written; ``done`` is set once committed), ``kept`` (cut off, ``held``
    bytes fsynced) or ``dropped`` (removed: forget it)."""

    kind: str
    url: str
    path: str = ""
    validator: str = ""
    held: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class _FileWriter:
    """Writes one body to an open descriptor, hashing it when asked."""

    def __init__(self, pending: PendingBody, fd: int, offset: int, digest: bool) -> None:
        self._pending = pending
        self._fd = fd
        self._offset = offset
        self._size = offset
        self._hasher = hashlib.sha256() if digest else None
        self.pieces = 0

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        if self._hasher is not None:
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
        if self._hasher is None or not self._offset:
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

    def digest(self) -> str | None:
        return self._hasher.hexdigest() if self._hasher is not None else None

    def close(self, sync: bool = False) -> None:
        try:
            if sync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)


class _TempWriter(_FileWriter):
    def __init__(self, store: BodyStore, pending: PendingBody, fd: int, digest: bool) -> None:
        super().__init__(pending, fd, 0, digest)
        self._store = store

    def finish(self) -> tuple[PendingBody, str | None]:
        self.close()
        return self._pending, self.digest()

    def abort(self, error: BaseException) -> None:
        with contextlib.suppress(OSError):
            self.close()
        self._store.discard(self._pending)


class TempBodies:
    """Each body in a fresh temporary file; nothing is ever resumed."""

    def __init__(self, store: BodyStore, digest: bool) -> None:
        self._store = store
        self._digest = digest

    def begin(self, job: FetchJob) -> ResumePoint | None:
        return None

    def end(self, job: FetchJob) -> None:
        return None

    def open(self, job: FetchJob, headers: Mapping[str, str], offset: int) -> BodyWriter:
        pending, fd = self._store.create(job.url)
        return _TempWriter(self._store, pending, fd, self._digest)

    def drop(self, job: FetchJob) -> None:
        return None


class _PartialWriter(_FileWriter):
    def __init__(
        self,
        owner: PartialBodies,
        url: str,
        pending: PendingBody,
        fd: int,
        offset: int,
        validator: str | None,
        replacing: bool,
    ) -> None:
        super().__init__(pending, fd, offset, owner.digest)
        self._owner = owner
        self._url = url
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
                self._recorded = self._owner.record_started(self._url, self.path, self._validator)
            elif self.pieces == 0:
                self._owner.record_dropped(self._url)
        super().write(chunk)

    def finish(self) -> tuple[PendingBody, str | None]:
        self.close()  # not synced: as any body renamed into place (docs/design.md)
        self._owner.forget(self._url)
        return self._pending, self.digest()

    def abort(self, error: BaseException) -> None:
        keep = self._recorded and keeps_partial(error)
        try:
            self.close(sync=keep)
        except OSError:
            keep = False
        if keep:
            self._owner.kept(self._url, self._pending, self.path, self.size)
        else:
            self._owner.dropped(self._url, self._pending)


class PartialBodies:
    """``-C``: bodies in partial files that outlive the run; see the module docstring.

    ``expect`` (main thread, at admission) and ``record_started`` (workers) tell it which
    validator each partial file was received under; ``begin`` offers a resume only for a file
    that exists and whose validator is known. One attempt at a time owns a URL's partial file
    (the same URL twice in a list, both in flight): the other writes a temporary file, as
    without ``-C``.
    """

    def __init__(
        self, store: BodyStore, notify: Callable[[PartialNotice], None], digest: bool
    ) -> None:
        self._store = store
        self._notify = notify
        self.digest = digest
        self._lock = threading.Lock()
        self._validators: dict[str, str] = {}
        self._owners: dict[str, int] = {}  # URL -> the worker thread whose attempt owns it

    def expect(self, url: str, stored: tuple[str, str, int] | None) -> None:
        """What the state holds for ``url`` (path, validator, bytes held): a partial file
        under this DIR is offered for resuming; one under another DIR is not."""
        if stored is not None and stored[0] == self._store.partial_path(url):
            with self._lock:
                self._validators[url] = stored[1]

    def begin(self, job: FetchJob) -> ResumePoint | None:
        me = threading.get_ident()
        with self._lock:
            if self._owners.setdefault(job.url, me) != me:
                return None  # another attempt of the same URL owns its partial file
            validator = self._validators.get(job.url)
        if validator is None:
            return None
        have = self._store.partial_size(job.url)
        return ResumePoint(have, validator) if have > 0 else None

    def end(self, job: FetchJob) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._owners.get(job.url) == me:
                del self._owners[job.url]

    def open(self, job: FetchJob, headers: Mapping[str, str], offset: int) -> BodyWriter:
        with self._lock:
            owner = self._owners.get(job.url) == threading.get_ident()
        if not owner:  # offset is 0: ``begin`` offered no resume
            temp, temp_fd = self._store.create(job.url)
            return _TempWriter(self._store, temp, temp_fd, self.digest)
        pending, fd, have = self._store.open_partial(job.url)
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
        known = self._known(job.url)
        validator = resume_validator(headers) if offset == 0 else known
        if offset == 0:
            self.forget(job.url)  # the old partial (if any) is being overwritten
        writer = _PartialWriter(
            self, job.url, pending, fd, offset, validator, replacing=known is not None
        )
        try:
            writer.hash_prefix()
        except BaseException:
            writer.abort(OutputError("cannot read partial body file"))
            raise
        return writer

    def drop(self, job: FetchJob) -> None:
        self.forget(job.url)
        self._store.remove_partial(job.url)
        self._notify(PartialNotice("dropped", job.url))

    # -- used by the writers ------------------------------------------------------------

    def _known(self, url: str) -> str | None:
        with self._lock:
            return self._validators.get(url)

    def forget(self, url: str) -> None:
        with self._lock:
            self._validators.pop(url, None)

    def record_started(self, url: str, path: str, validator: str) -> bool:
        """Have the main thread record the partial file; True once it is committed."""
        notice = PartialNotice("started", url, path, validator)
        self._notify(notice)
        if not notice.done.wait(REGISTER_TIMEOUT_S):
            return False
        with self._lock:
            self._validators[url] = validator
        return True

    def record_dropped(self, url: str) -> None:
        """Have the main thread forget the partial file's old row, and wait for it."""
        notice = PartialNotice("dropped", url)
        self._notify(notice)
        notice.done.wait(REGISTER_TIMEOUT_S)

    def kept(self, url: str, pending: PendingBody, path: str, held: int) -> None:
        self._store.release(pending)
        self._notify(PartialNotice("kept", url, path, held=held))

    def dropped(self, url: str, pending: PendingBody) -> None:
        self.forget(url)
        self._store.discard(pending)
        self._notify(PartialNotice("dropped", url))
