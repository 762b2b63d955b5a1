"""One typed codec for the values that cross a process boundary: dataclasses <-> JSON.

Jobs, attempts and the run's configuration travel between the main process and its worker
processes (and a shared run's processes). Instead of field-by-field code for each type, the
codec walks a frozen dataclass by its fields and rebuilds it from the field *annotations*, so a
field added to ``FetchJob`` or ``FetchConfig`` travels without anyone touching this module.

Supported field types: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` (base64),
``Path``, ``tuple[...]`` (fixed or ``...``), ``list[X]``, ``dict[str, X]``, ``frozenset[X]``,
unions (``X | None``), nested dataclasses, and exceptions of the ``poolfetch.core.errors`` tree
(sent as class name and message; an unknown class arrives as ``FetchError``). A value that does
not fit its annotation raises ``CodecError``: the two sides are the same program, so that is a
bug, never a server's doing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from poolfetch.core import errors

T = TypeVar("T")
_Decoder = Callable[[Any], Any]


class CodecError(ValueError):
    """A value on the wire does not match the type it should decode to."""


_PLAIN = (type(None), bool, int, float, str)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def encode(value: object) -> Any:
    """A JSON-ready form of ``value`` (dataclasses as objects of their fields)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind))
    if names is not None:
        return {name: encode(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(encode(v) for v in value)
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    raise CodecError(f"cannot encode a {type(value).__name__}")


def decode(kind: type[T], data: Any) -> T:
    """Rebuild a ``kind`` from what ``encode`` made of one."""
    result: T = _decoder(kind)(data)
    return result


def dumps(value: object) -> bytes:
    """``encode`` as compact JSON bytes."""
    return json.dumps(encode(value), separators=(",", ":")).encode("utf-8")


def loads(kind: type[T], raw: bytes) -> T:
    """The inverse of ``dumps``."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    return decode(kind, data)


_DECODERS: dict[Any, _Decoder] = {}


def _decoder(kind: Any) -> _Decoder:
    """The decoder of one annotation, built once and cached."""
    found = _DECODERS.get(kind)
    if found is None:
        found = _DECODERS[kind] = _build(kind)
    return found


def _build(kind: Any) -> _Decoder:
    if kind is Any or kind is object:
        return lambda data: data
    if kind is type(None):
        return _expect_none
    if kind in (bool, str):
        return _exact(kind)
    if kind is int:
        return _integer
    if kind is float:
        return _number
    if kind is bytes:
        return _bytes
    if kind is Path:
        return lambda data: Path(_exact(str)(data))
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return _exception
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass(kind)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _union(args)
    if origin is tuple:
        return _tuple(args)
    if origin is list:
        item = _decoder(args[0])
        return lambda data: [item(v) for v in _sequence(data)]
    if origin in (frozenset, set):
        member = _decoder(args[0])
        return lambda data: frozenset(member(v) for v in _sequence(data))
    if origin is dict:
        value = _decoder(args[1])
        return lambda data: {str(k): value(v) for k, v in _mapping(data).items()}
    raise CodecError(f"no decoder for {kind!r}")


def _dataclass(kind: type) -> _Decoder:
    fields = [(f.name, _decoder(_annotation(kind, f))) for f in dataclasses.fields(kind) if f.init]

    def decode_fields(data: Any) -> Any:
        mapping = _mapping(data)
        values: dict[str, Any] = {}
        for name, field_decoder in fields:
            if name in mapping:
                values[name] = field_decoder(mapping[name])
        try:
            return kind(**values)
        except TypeError as exc:
            raise CodecError(f"{kind.__name__}: {exc}") from exc

    return decode_fields


def _annotation(kind: type, field: dataclasses.Field[Any]) -> Any:
    """The field's type, its string annotation evaluated in its class's module. A name that
    module imports only for type checking cannot be resolved: such a field travels as plain
    JSON (``Any``); poolfetch's own are always ``None`` on the wire (an ``Attempt``'s
    uncommitted body)."""
    if not isinstance(field.type, str):
        return field.type
    namespace = vars(sys.modules[kind.__module__])
    try:
        return eval(field.type, namespace)  # our own source's annotations
    except NameError:
        return Any


def _union(args: tuple[Any, ...]) -> _Decoder:
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    if len(rest) == 1:
        inner = _decoder(rest[0])
        return (lambda data: None if data is None else inner(data)) if optional else inner
    choices = [_decoder(a) for a in rest]

    def first_fit(data: Any) -> Any:
        if data is None and optional:
            return None
        for choice in choices:
            try:
                return choice(data)
            except CodecError:
                continue
        raise CodecError(f"{data!r} fits none of {rest!r}")

    return first_fit


def _tuple(args: tuple[Any, ...]) -> _Decoder:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])
        return lambda data: tuple(item(v) for v in _sequence(data))
    items = [_decoder(a) for a in args]

    def fixed(data: Any) -> tuple[Any, ...]:
        values = _sequence(data)
        if len(values) != len(items):
            raise CodecError(f"expected {len(items)} items, got {len(values)}")
        return tuple(d(v) for d, v in zip(items, values, strict=True))

    return fixed


def _exact(kind: type) -> _Decoder:
    def check(data: Any) -> Any:
        if type(data) is not kind:
            raise CodecError(f"expected {kind.__name__}, got {type(data).__name__}")
        return data

    return check


def _expect_none(data: Any) -> None:
    if data is not None:
        raise CodecError(f"expected null, got {type(data).__name__}")


def _integer(data: Any) -> int:
    if type(data) is not int:
        raise CodecError(f"expected int, got {type(data).__name__}")
    return data


def _number(data: Any) -> float:
    if type(data) not in (int, float):
        raise CodecError(f"expected a number, got {type(data).__name__}")
    return float(data)


def _bytes(data: Any) -> bytes:
    try:
        return base64.b64decode(_exact(str)(data), validate=True)
    except ValueError as exc:
        raise CodecError(f"bad base64: {exc}") from exc


def _sequence(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise CodecError(f"expected a list, got {type(data).__name__}")
    return data


def _mapping(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CodecError(f"expected an object, got {type(data).__name__}")
    return data


def _exception(data: Any) -> BaseException:
    mapping = _mapping(data)
    name = mapping.get("type")
    message = str(mapping.get("message", ""))
    kind = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(kind, type) and issubclass(kind, errors.PoolfetchError)):
        kind = errors.FetchError
    try:
        return kind(message)
    except TypeError:  # a class whose constructor wants more than a message
        return errors.FetchError(message)
