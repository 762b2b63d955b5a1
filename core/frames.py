"""The messages between the main process and its worker processes, and how they are framed.

Each message is one frame on a pipe: a 4-byte big-endian length, one byte naming the message,
then the message as JSON (``core.codec``). The main process sends the run's setup once, then
jobs; a worker process answers ``Ready`` once its Sessions are built, then one ``Done`` per job.
``stop`` carries no body: "remove your temporary files and exit now" (the run is over, or its
grace period after a signal has ended).

Both sides write the frames that pile up while a write is under way as one write, and read
with ``FrameReader``: one ``read`` system call takes every frame the other side has written
since the last, so a busy run pays a system call and a wake-up per batch, not per attempt.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from dataclasses import dataclass
from typing import IO

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig
from poolfetch.core.models import FetchJob
from poolfetch.core.transport import Attempt

_HEADER = struct.Struct(">IB")
#: No message comes near this; a longer frame means the pipe is out of step (a bug).
MAX_FRAME = 64 * 1024 * 1024
#: Bytes asked of one ``read`` (a pipe holds 64 KiB by default).
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Setup:
    """What a worker process needs to start: the run's config, its share of the workers, and
    the file of the ``--limit-rate`` line shared by the run's processes (if limited)."""

    config: FetchConfig
    version: str
    workers: int
    cpu: int | None
    bandwidth_line: str | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker process has built its Sessions."""

    sessions: int


@dataclass(frozen=True, slots=True)
class Job:
    """One attempt to make; ``id`` names it in the answer. ``worker``: the worker thread of the
    child that is to run it (``core.job_router``; -1: any)."""

    id: int
    job: FetchJob
    worker: int = -1


@dataclass(frozen=True, slots=True)
class Done:
    """The attempt ``id`` ended (its body, if any, already saved under its final name)."""

    id: int
    attempt: Attempt


Message = Setup | Ready | Job | Done | str
_KINDS: dict[int, type] = {1: Setup, 2: Ready, 3: Job, 4: Done}
_CODES = {kind: code for code, kind in _KINDS.items()}
#: Bodiless messages.
STOP = "stop"
_SIGNALS = {6: STOP}
_SIGNAL_CODES = {name: code for code, name in _SIGNALS.items()}


class WireError(Exception):
    """The other side sent something that is not a frame (the pipe is out of step)."""


def frame(message: Message) -> bytes:
    """``message`` as one frame."""
    if isinstance(message, str):
        return _HEADER.pack(0, _SIGNAL_CODES[message])
    body = codec.dumps(message)
    return _HEADER.pack(len(body), _CODES[type(message)]) + body


def read_frame(stream: IO[bytes]) -> Message | None:
    """The next message on ``stream``, or None at its end (the other side exited)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    length, code = _HEADER.unpack(header)
    if code in _SIGNALS:
        return _SIGNALS[code]
    body = _read_exactly(stream, _check_length(code, length))
    if body is None:
        return None
    return _decode(code, body)


class FrameReader:
    """The messages arriving on one pipe (a file descriptor), read in large chunks.

    ``batch`` waits for at least one message and returns every message complete by then, decoded
    by the calling thread; ``next`` returns them one at a time. Not thread-safe: one reader (or
    one lock holder) at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._ready: deque[Message] = deque()

    def next(self) -> Message | None:
        """The next message, or None at the end of the pipe."""
        if not self._ready:
            batch = self.batch()
            if batch is None:
                return None
            self._ready.extend(batch)
        return self._ready.popleft()

    def batch(self) -> list[Message] | None:
        """Every message available (at least one), or None at the end of the pipe (a frame cut
        short by the other side's exit is the end too)."""
        if self._ready:
            messages = list(self._ready)
            self._ready.clear()
            return messages
        while True:
            messages = self._parse()
            if messages:
                return messages
            piece = os.read(self._fd, _CHUNK)
            if not piece:
                return None
            self._buffer += piece

    def _parse(self) -> list[Message]:
        buffer = self._buffer
        size = len(buffer)
        offset = 0
        messages: list[Message] = []
        header = _HEADER.size
        while size - offset >= header:
            length, code = _HEADER.unpack_from(buffer, offset)
            if code in _SIGNALS:
                messages.append(_SIGNALS[code])
                offset += header
                continue
            end = offset + header + _check_length(code, length)
            if end > size:
                break
            messages.append(_decode(code, bytes(buffer[offset + header : end])))
            offset = end
        if offset:
            del buffer[:offset]
        return messages


class FrameWriter:
    """Frames to one pipe from many threads, batched without waiting.

    A thread that finds a write under way only queues its frame: the writing thread writes
    everything queued meanwhile as its next single write. A broken pipe raises ``OSError`` (or
    ``ValueError`` once closed) in the thread that was writing."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._queued: list[bytes] = []
        self._writing = False

    def send(self, data: bytes) -> None:
        with self._lock:
            self._queued.append(data)
            if self._writing:
                return
            self._writing = True
        try:
            while True:
                with self._lock:
                    if not self._queued:
                        self._writing = False
                        return
                    chunk = b"".join(self._queued)
                    self._queued.clear()
                self._out.write(chunk)
                self._out.flush()
        except BaseException:
            with self._lock:
                self._writing = False
            raise


def _check_length(code: int, length: int) -> int:
    if code not in _KINDS or length > MAX_FRAME:
        raise WireError(f"bad frame (kind {code}, {length} bytes)")
    return length


def _decode(code: int, body: bytes) -> Message:
    kind = _KINDS[code]
    try:
        message: Message = codec.loads(kind, body)
    except codec.CodecError as exc:
        raise WireError(f"bad {kind.__name__} message: {exc}") from exc
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        piece = stream.read(size - len(data))
        if not piece:
            return None
        data += piece
    return data
