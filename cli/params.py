"""Click parameter types and the ``--config`` TOML loader.

Precedence is Click's own: command line > environment (``POOLFETCH_<OPTION>``) > the config
file (loaded into ``ctx.default_map`` by the eager ``--config`` option) > defaults.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from typing import Any

import click
from click.core import ParameterSource

from poolfetch.cli.streams import STDIN, closed_path, closed_problem, hint_if_typing
from poolfetch.core.errors import ConfigError
from poolfetch.core.rates import Rate, parse_rate
from poolfetch.core.request import reject_constant

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[iI]?[bB]?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class SizeType(click.ParamType[int, Any]):
    """A byte size: ``512``, ``64k``, ``10M``, ``1G`` (powers of 1024)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a size (examples: 512, 64k, 10M, 1G)", param, ctx)
        return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class ProcessesType(click.ParamType[int, Any]):
    """A number of processes, or ``auto``: one per CPU this process may use."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            count = value
        elif str(value).strip().lower() == "auto":
            return usable_cpus()
        else:
            try:
                count = int(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of processes or 'auto'", param, ctx)
        if count < 1:
            self.fail(f"{count} is not a number of processes (1 or more, or 'auto')", param, ctx)
        return count


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class RateType(click.ParamType[Rate, Any]):
    """A request rate: ``30`` (per second), ``60/m``, ``5000/h``, ``100/15s`` (curl's --rate)."""

    name = "RATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Rate:
        if isinstance(value, Rate):
            return value
        try:
            return parse_rate(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "RATE"


class StatusListType(click.ParamType[frozenset[int], Any]):
    """Comma-separated HTTP status codes: ``429,500,502,503,504``."""

    name = "CODES"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> frozenset[int]:
        if isinstance(value, frozenset):
            return value
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        codes: set[int] = set()
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            if not text.isdigit() or not 100 <= int(text) <= 599:
                self.fail(f"{text!r} is not an HTTP status code", param, ctx)
            codes.add(int(text))
        return frozenset(codes)


class HeaderType(click.ParamType[tuple[str, str], Any]):
    """``Name: value``. From the environment, several headers are separated by newlines."""

    name = "HEADER"
    envvar_list_splitter = "\n"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        name, sep, rest = str(value).partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            self.fail(f"{value!r} is not a header (expected 'Name: value')", param, ctx)
        if any(c in rest for c in "\r\n\x00"):
            self.fail(f"header {name!r} contains a line break or NUL", param, ctx)
        return name, rest.strip()


def load_config_file(path: str, valid: dict[str, str]) -> dict[str, Any]:
    """Read a TOML config: option names as top-level keys, dashes or underscores alike.

    ``valid`` maps each accepted key (underscores for dashes) to its parameter name.
    """
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}") from exc
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        name = valid.get(key.replace("-", "_"))
        if name is None:
            raise click.BadParameter(f"{path}: unknown option {key!r}")
        if name == "retry_on" and isinstance(value, list):
            defaults[name] = ",".join(str(v) for v in value)
        elif name == "header" and isinstance(value, str):
            defaults[name] = [value]
        else:
            defaults[name] = value
    return defaults


def load_body(value: str, option: str, stdin_urls: bool = False) -> bytes:
    """The body ``-d``/``--json`` name: the text itself, or ``@FILE`` read once, as it is;
    ``@-`` reads standard input to its end, as curl does.

    An unreadable file is a usage error naming the option, as is ``@-`` when standard input
    carries the URLs (``stdin_urls``: no SOURCE, or ``-``).
    """
    if not value.startswith("@"):
        return value.encode("utf-8", "surrogateescape")
    path = value[1:]
    closed = STDIN if path == "-" else closed_path(path)
    problem = closed_problem(closed, "give the body as @FILE") if closed is not None else None
    if problem is not None:
        raise click.UsageError(f"{option} {value}: {problem}")
    if path == "-":
        if stdin_urls:
            raise click.UsageError(
                f"{option} @-: standard input carries the URLs here; "
                "give the URLs as a file, or the body as @FILE"
            )
        hint_if_typing(f"the {option} body")
        try:
            return sys.stdin.buffer.read()
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"{option} @-: cannot read standard input: {exc}") from exc
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise click.UsageError(f"{option} {value}: cannot read {path}: {exc.strerror}") from exc


def check_json(body: bytes, option: str) -> None:
    """A usage error unless ``body`` is one JSON text (UTF-8), saying where it goes wrong."""
    try:
        json.loads(body.decode("utf-8"), parse_constant=reject_constant)
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"{option}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise click.UsageError(f"{option}: not valid JSON: {exc.msg} at {where}") from exc
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise click.UsageError(f"{option}: not valid JSON: {reason}") from exc


class SourcedCommand(click.Command):
    """A command whose bad-value errors say where a value came from when it was not typed:
    ``Invalid value for '--qps' (from POOLFETCH_QPS): …`` or ``(from the --config file)``,
    so a user hunting the command line for ``--qps`` is sent to the right place."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            param = exc.param
            if param is not None and param.name is not None and exc.param_hint is None:
                source = ctx.get_parameter_source(param.name)
                where = None
                if source is ParameterSource.ENVIRONMENT:
                    where = param.envvar if isinstance(param.envvar, str) else "the environment"
                elif source is ParameterSource.DEFAULT_MAP:
                    where = f"--config {_config_path(ctx)}"
                if where is not None:
                    exc.param_hint = f"{param.get_error_hint(ctx)} (from {where})"
            raise


def _config_path(ctx: click.Context) -> str:
    """The --config file given (its option is not exposed as a parameter value)."""
    return str(ctx.meta.get("poolfetch.config_file", "file"))
