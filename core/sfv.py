"""A small parser of HTTP Structured Field Values (RFC 8941): Lists and Dictionaries of Items.

Just what the rate-limit fields need (``core/ratelimit_headers.py``): Items with parameters
whose bare items are Integers, Decimals, Strings, Tokens, Byte Sequences or Booleans. Inner
lists are not used by those fields and fail the parse. As the RFC requires, any syntax error
fails the whole field (``StructuredFieldError``): a field is read completely or not at all.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field

BareItem = int | float | str | bytes | bool

_INTEGER_DIGITS = 15
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*", re.ASCII)
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*", re.ASCII)
_NUMBER = re.compile(r"-?(\d+)(?:\.(\d*))?", re.ASCII)
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):", re.ASCII)


class StructuredFieldError(ValueError):
    """The field is not a valid structured field of the expected type."""


@dataclass(frozen=True, slots=True)
class Item:
    """A bare item and its parameters (a parameter without a value is ``True``)."""

    value: BareItem
    params: dict[str, BareItem] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """The item as a name (a String or a Token), or None."""
        return self.value if isinstance(self.value, str) else None


class _Parser:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise StructuredFieldError("not ASCII")
        self.text = text.strip(" \t")
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> re.Match[str]:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise StructuredFieldError(f"unexpected {self.peek()!r} at {self.pos}")
        self.pos = found.end()
        return found

    def members(self, read: Callable[[], object]) -> None:
        """``member *(OWS "," OWS member)``, each read by ``read``; empty is allowed."""
        while not self.done():
            read()
            self.skip(" \t")
            if self.done():
                return
            if self.peek() != ",":
                raise StructuredFieldError(f"expected ',' at {self.pos}")
            self.pos += 1
            self.skip(" \t")
            if self.done():
                raise StructuredFieldError("trailing comma")

    def item(self) -> Item:
        if self.peek() == "(":
            raise StructuredFieldError("inner lists are not expected here")
        value = self.bare_item()
        return Item(value, self.params())

    def params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.match(_KEY).group()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[key] = value
        return params

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == "-" or char.isdigit():
            return self.number()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char == "*" or char.isalpha():
            return self.match(_TOKEN).group()
        raise StructuredFieldError(f"unexpected {char!r} at {self.pos}")

    def number(self) -> int | float:
        found = self.match(_NUMBER)
        whole, fraction = found.group(1), found.group(2)
        if fraction is None:
            if len(whole) > _INTEGER_DIGITS:
                raise StructuredFieldError("integer too long")
            return int(found.group())
        if len(whole) > 12 or not 1 <= len(fraction) <= 3:
            raise StructuredFieldError("decimal out of range")
        return float(found.group())

    def string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while not self.done():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\") or not escaped:
                    raise StructuredFieldError("bad escape in string")
                out.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(out)
            elif not " " <= char <= "~":
                raise StructuredFieldError("control character in string")
            else:
                out.append(char)
        raise StructuredFieldError("unterminated string")

    def byte_sequence(self) -> bytes:
        encoded = self.match(_BYTES).group(1)
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        except binascii.Error as exc:
            raise StructuredFieldError("bad byte sequence") from exc

    def boolean(self) -> bool:
        value = self.text[self.pos + 1 : self.pos + 2]
        if value not in ("0", "1"):
            raise StructuredFieldError("bad boolean")
        self.pos += 2
        return value == "1"


def parse_list(text: str) -> list[Item]:
    """An sf-list of Items (``"default";r=50;t=30, "hour";r=99``)."""
    parser = _Parser(text)
    items: list[Item] = []
    parser.members(lambda: items.append(parser.item()))
    return items


def parse_dictionary(text: str) -> dict[str, BareItem]:
    """An sf-dictionary's values by key (``limit=100, remaining=50, reset=5``); parameters are
    parsed and dropped; a key without a value is ``True``; a repeated key keeps the last."""
    parser = _Parser(text)
    members: dict[str, BareItem] = {}

    def member() -> None:
        key = parser.match(_KEY).group()
        value: BareItem = True
        if parser.peek() == "=":
            parser.pos += 1
            value = parser.item().value
        else:
            parser.params()
        members[key] = value

    parser.members(member)
    return members
