"""The messages between the main process and its worker processes, and how they are framed.

Each message is one frame on a pipe: a 4-byte big-endian length, one byte naming the message,
then the message as JSON (``core.codec``). The main process sends the run's setup once, then
jobs; a worker process answers ``Ready`` once its Sessions are built, then one ``Done`` per job.
``stop`` carries no body: "remove your temporary files and exit now" (the run is over, or its
grace period after a signal has ended).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from poolfetch.core import codec
from poolfetch.core.config import FetchConfig
from poolfetch.core.models import FetchJob
from poolfetch.core.transport import Attempt

_HEADER = struct.Struct(">IB")
#: No message comes near this; a longer frame means the pipe is out of step (a bug).
MAX_FRAME = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Setup:
    """What a worker process needs to start: the run's config and its share of the workers."""

    config: FetchConfig
    version: str
    workers: int
    cpu: int | None


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker process has built its Sessions."""

    sessions: int


@dataclass(frozen=True, slots=True)
class Job:
    """One attempt to make; ``id`` names it in the answer."""

    id: int
    job: FetchJob


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
    kind = _KINDS.get(code)
    if kind is None or length > MAX_FRAME:
        raise WireError(f"bad frame (kind {code}, {length} bytes)")
    body = _read_exactly(stream, length)
    if body is None:
        return None
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
