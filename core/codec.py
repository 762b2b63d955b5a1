"""One typed codec for the values that cross a process boundary: dataclasses <-> JSON.

Jobs, attempts and the run's configuration travel between the main process and its worker
processes. Instead of field-by-field code for each type, the codec reads a frozen dataclass's
fields and their *annotations* and generates, once per class, an encoder and a decoder for a
fixed layout: the dataclass is a JSON array of its ``__init__`` fields in declaration order. A
field added to ``FetchJob`` or ``FetchConfig`` travels without anyone touching this module.

The layout is positional (no field names on the wire) and the generated code checks plain
fields (``int``, ``str``, ``float``, ``bool``, their unions with ``None``) inline, so one job or
answer costs a few microseconds each way: every attempt of ``--processes`` crosses the pipes
twice. Both ends are the same program, so the layout needs no versioning.

Supported field types: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` (base64),
``Path``, ``tuple[...]`` (fixed or ``...``), ``list[X]``, ``dict[str, X]``, ``frozenset[X]``,
unions (``X | None``), nested dataclasses, and exceptions of the ``poolfetch.core.errors`` tree
(sent as ``[class name, message]``; an unknown class arrives as ``FetchError``). A value that
does not fit its annotation raises ``CodecError``: the two sides are the same program, so that
is a bug, never a server's doing.
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
_Coder = Callable[[Any], Any]
_NONE = type(None)
#: Annotations whose values JSON carries as they are (checked by type on the way in).
_PLAIN = frozenset({_NONE, bool, int, float, str})
#: What an array may be: a list from JSON, a tuple straight from ``encode``.
_ARRAYS = (list, tuple)


class CodecError(ValueError):
    """A value on the wire does not match the type it should decode to."""


def encode(value: object) -> Any:
    """A JSON-ready form of ``value`` (a dataclass as the array of its fields), by its type at
    run time; the fields of a dataclass are encoded by their annotations."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if dataclasses.is_dataclass(kind):
        return _dataclass_coders(kind)[0](value)
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(encode(v) for v in value)
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return _encode_bytes(value)
    if isinstance(value, BaseException):
        return _encode_exception(value)
    raise CodecError(f"cannot encode a {type(value).__name__}")


def decode(kind: type[T], data: Any) -> T:
    """Rebuild a ``kind`` from what ``encode`` made of one."""
    result: T = _decoder(kind)(data)
    return result


def dumps(value: object) -> bytes:
    """``encode`` as compact JSON bytes."""
    try:
        return json.dumps(encode(value), separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:  # a field holding what its annotation does not say
        raise CodecError(f"cannot encode a {type(value).__name__}: {exc}") from exc


def loads(kind: type[T], raw: bytes) -> T:
    """The inverse of ``dumps``."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    return decode(kind, data)


# -- encoders, by annotation (None: the value is JSON-ready as it is) ---------------------------

_ENCODERS: dict[Any, _Coder | None] = {}


def _encoder(kind: Any) -> _Coder | None:
    if kind in _ENCODERS:
        return _ENCODERS[kind]
    found = _ENCODERS[kind] = _build_encoder(kind)
    return found


def _build_encoder(kind: Any) -> _Coder | None:
    if kind is Any or kind is object:
        return encode
    if kind in _PLAIN:
        return None
    if kind is bytes:
        return _encode_bytes
    if kind is Path:
        return str
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return _encode_exception
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass_coders(kind)[0]
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not _NONE]
        parts = [_encoder(a) for a in rest]
        if all(p is None for p in parts):
            return None
        if len(rest) == 1 and (inner := parts[0]) is not None:
            return lambda value: None if value is None else inner(value)
        return encode  # a union of several structured kinds: by the value's own type
    if origin in (tuple, list):
        variadic = origin is list or (len(args) == 2 and args[1] is Ellipsis)
        items = [_encoder(args[0])] if variadic else [_encoder(a) for a in args]
        if all(i is None for i in items):
            return None  # JSON writes tuples as arrays
        if variadic:
            item = items[0] or _same
            return lambda value: [item(v) for v in value]
        fixed = [i or _same for i in items]
        return lambda value: [e(v) for e, v in zip(fixed, value, strict=True)]
    if origin in (frozenset, set):
        member = _encoder(args[0]) or _same
        return lambda value: sorted(member(v) for v in value)
    if origin is dict:
        entry = _encoder(args[1]) or _same
        return lambda value: {str(k): entry(v) for k, v in value.items()}
    raise CodecError(f"no encoder for {kind!r}")


def _same(value: Any) -> Any:
    return value


def _encode_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _encode_exception(value: BaseException) -> list[str]:
    return [type(value).__name__, str(value)]


# -- decoders, by annotation --------------------------------------------------------------------

_DECODERS: dict[Any, _Coder] = {}


def _decoder(kind: Any) -> _Coder:
    """The decoder of one annotation, built once and cached."""
    found = _DECODERS.get(kind)
    if found is None:
        found = _DECODERS[kind] = _build(kind)
    return found


def _build(kind: Any) -> _Coder:
    if kind is Any or kind is object:
        return _same
    if kind is _NONE:
        return _expect_none
    if kind in (bool, str, int):
        return _exact(kind)
    if kind is float:
        return _number
    if kind is bytes:
        return _bytes
    if kind is Path:
        return lambda data: Path(_exact(str)(data))
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return _exception
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass_coders(kind)[1]
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


# -- the generated code of one dataclass ---------------------------------------------------------

_DATACLASSES: dict[type, tuple[_Coder, _Coder]] = {}


def _dataclass_coders(kind: type) -> tuple[_Coder, _Coder]:
    """The (encoder, decoder) of a dataclass, generated from its fields once."""
    found = _DATACLASSES.get(kind)
    if found is None:
        found = _DATACLASSES[kind] = _generate(kind)
    return found


def _generate(kind: type) -> tuple[_Coder, _Coder]:
    """Source for the two functions of ``kind``'s layout, compiled once.

    The encoder lists the fields; the decoder unpacks the array (its length checked), checks
    each plain field by ``type(...)`` inline and calls a field decoder only for the others."""
    fields = [f for f in dataclasses.fields(kind) if f.init]
    names = [f.name for f in fields]
    annotations = [_annotation(kind, f) for f in fields]
    scope: dict[str, Any] = {
        "_cls": kind,
        "_bad": _bad_field,
        "_shape": _bad_shape,
        "_num": _number_field,
        "CodecError": CodecError,
        "_arrays": _ARRAYS,
    }
    encoded: list[str] = []
    checks: list[str] = []
    for i, (name, annotation) in enumerate(zip(names, annotations, strict=True)):
        encoder = _encoder(annotation)
        if encoder is None:
            encoded.append(f"v.{name}")
        else:
            scope[f"_e{i}"] = encoder
            encoded.append(f"_e{i}(v.{name})")
        checks.extend(_check(i, annotation, scope))
    unpack = "".join(f"a{i}, " for i in range(len(names)))
    source = [
        "def encode(v):",
        f"    return [{', '.join(encoded)}]",
        "def decode(data):",
        f"    if type(data) not in _arrays or len(data) != {len(names)}:",
        "        _shape(_cls, data)",
        f"    ({unpack}) = data",
        *checks,
        "    try:",
        f"        return _cls({', '.join(f'{n}=a{i}' for i, n in enumerate(names))})",
        "    except (TypeError, ValueError) as exc:",
        "        raise CodecError(f'{_cls.__name__}: {exc}') from exc",
    ]
    exec("\n".join(source), scope)  # our own field names, never data
    return scope["encode"], scope["decode"]


def _check(i: int, annotation: Any, scope: dict[str, Any]) -> list[str]:
    """The decoder's lines for field ``i``: an inline type check, or a call of its decoder."""
    var = f"a{i}"
    allowed = _plain_union(annotation)
    if allowed is None:
        scope[f"_d{i}"] = _decoder(annotation)
        return [f"    {var} = _d{i}({var})"]
    optional = _NONE in allowed
    kinds = [k for k in allowed if k is not _NONE]
    if not kinds:
        return [f"    if {var} is not None:", f"        _bad(_cls, {i}, {var})"]
    guard = f"{var} is not None and " if optional else ""
    if kinds == [float]:
        return [
            f"    if {guard}type({var}) is not float:",
            f"        {var} = _num(_cls, {i}, {var})",
        ]
    if len(kinds) == 1:
        test = f"type({var}) is not {kinds[0].__name__}"
    else:
        scope[f"_k{i}"] = frozenset(kinds) | ({int} if float in kinds else set())
        test = f"type({var}) not in _k{i}"
    return [f"    if {guard}{test}:", f"        _bad(_cls, {i}, {var})"]


def _plain_union(annotation: Any) -> frozenset[Any] | None:
    """The plain types an annotation allows, if it allows nothing else (else None)."""
    if annotation in _PLAIN:
        return frozenset({annotation})
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = frozenset(typing.get_args(annotation))
        if args <= _PLAIN:
            return args
    return None


def _bad_shape(kind: type, data: Any) -> None:
    if type(data) not in _ARRAYS:
        raise CodecError(f"{kind.__name__}: expected an array, got {type(data).__name__}")
    count = len([f for f in dataclasses.fields(kind) if f.init])
    raise CodecError(f"{kind.__name__}: expected {count} fields, got {len(data)}")


def _bad_field(kind: type, index: int, data: Any) -> None:
    name = [f for f in dataclasses.fields(kind) if f.init][index].name
    raise CodecError(f"{kind.__name__}.{name}: unexpected {type(data).__name__}")


def _number_field(kind: type, index: int, data: Any) -> float:
    if type(data) is not int:
        _bad_field(kind, index, data)
    return float(data)


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


def _union(args: tuple[Any, ...]) -> _Coder:
    optional = _NONE in args
    rest = [a for a in args if a is not _NONE]
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


def _tuple(args: tuple[Any, ...]) -> _Coder:
    if len(args) == 2 and args[1] is Ellipsis:
        if args[0] == tuple[str, str]:
            return _string_pairs  # headers and validators: the hot case, checked in one pass
        item = _decoder(args[0])
        return lambda data: tuple(item(v) for v in _sequence(data))
    items = [_decoder(a) for a in args]

    def fixed(data: Any) -> tuple[Any, ...]:
        values = _sequence(data)
        if len(values) != len(items):
            raise CodecError(f"expected {len(items)} items, got {len(values)}")
        return tuple(d(v) for d, v in zip(items, values, strict=True))

    return fixed


def _string_pairs(data: Any) -> tuple[tuple[str, str], ...]:
    if type(data) not in _ARRAYS:
        raise CodecError(f"expected a list, got {type(data).__name__}")
    if not data:
        return ()
    for pair in data:
        if not (type(pair) in _ARRAYS and len(pair) == 2):
            raise CodecError(f"expected a pair of strings, got {pair!r}")
        if type(pair[0]) is not str or type(pair[1]) is not str:
            raise CodecError(f"expected a pair of strings, got {pair!r}")
    return tuple((k, v) for k, v in data)


def _exact(kind: type) -> _Coder:
    def check(data: Any) -> Any:
        if type(data) is not kind:
            raise CodecError(f"expected {kind.__name__}, got {type(data).__name__}")
        return data

    return check


def _expect_none(data: Any) -> None:
    if data is not None:
        raise CodecError(f"expected null, got {type(data).__name__}")


def _number(data: Any) -> float:
    if type(data) not in (int, float):
        raise CodecError(f"expected a number, got {type(data).__name__}")
    return float(data)


def _bytes(data: Any) -> bytes:
    try:
        return base64.b64decode(_exact(str)(data), validate=True)
    except ValueError as exc:
        raise CodecError(f"bad base64: {exc}") from exc


def _sequence(data: Any) -> list[Any] | tuple[Any, ...]:
    if type(data) not in _ARRAYS:
        raise CodecError(f"expected a list, got {type(data).__name__}")
    result: list[Any] | tuple[Any, ...] = data
    return result


def _mapping(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CodecError(f"expected an object, got {type(data).__name__}")
    return data


def _exception(data: Any) -> BaseException:
    if not (type(data) in _ARRAYS and len(data) == 2):
        raise CodecError(f"expected [class, message], got {data!r}")
    name, message = data
    kind = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(kind, type) and issubclass(kind, errors.PoolfetchError)):
        kind = errors.FetchError
    try:
        return kind(str(message))
    except TypeError:  # a class whose constructor wants more than a message
        return errors.FetchError(str(message))
