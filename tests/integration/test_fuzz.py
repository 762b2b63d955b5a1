"""A bounded fuzzing pass: the real CLI under random options, URL lists and server behaviours.

Hypothesis draws option combinations and lists of URL lines (practice-server paths that answer,
fail, reset, cut short, redirect or compress, plus lines that are not URLs at all) and checks
the invariants of the contract on every run. ``derandomize=True`` makes the examples the same
on every machine, so a CI failure reproduces locally. Every failure this pass ever found is
also a regular test in ``test_hostile.py`` (marked "found by test_fuzz").
"""

from __future__ import annotations

import collections
import itertools
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_cli

from poolfetch.core.practice import PracticeServer

RECORD_KEYS = {"url", "ok", "status", "attempts", "bytes", "elapsed_ms", "error", "path"}
ASCII_SPACE = " \t\r\n\x0b\x0c"
DEFAULT_MAX_REDIRECTS = 10
#: Longest one example's CLI run may take (the pass itself is about 25 s for 50 examples).
RUN_TIMEOUT_S = 45
_example_ids = itertools.count()


@dataclass(frozen=True)
class Line:
    """One input line: either a practice-server path, or raw text that is not a fetchable URL."""

    path: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Options:
    """One drawn combination of ``run`` options (None: the option is not given)."""

    workers: int
    qps: float | None
    retries: int
    backoff: float
    per_host_connections: int | None
    max_bytes: int | None
    timeout: float
    adaptive: bool
    output: bool

    def args(self) -> list[str]:
        args = ["--workers", str(self.workers), "--retries", str(self.retries)]
        args += ["--backoff", f"{self.backoff:.3f}", "--timeout", f"{self.timeout:.2f}"]
        if self.qps is not None:
            args += ["--qps", f"{self.qps:.1f}"]
        if self.per_host_connections is not None:
            args += ["--per-host-connections", str(self.per_host_connections)]
        if self.max_bytes is not None:
            args += ["--max-bytes", str(self.max_bytes)]
        if not self.adaptive:
            args.append("--no-adaptive")
        if self.output:
            args += ["-o", "out"]
        return args


options = st.builds(
    Options,
    workers=st.integers(1, 8),
    qps=st.none() | st.floats(5, 200),
    retries=st.integers(0, 2),
    backoff=st.floats(0, 0.1),
    per_host_connections=st.none() | st.integers(1, 3),
    max_bytes=st.none() | st.integers(100, 100_000),
    timeout=st.floats(0.5, 2),
    adaptive=st.booleans(),
    output=st.booleans(),
)

server_paths = st.one_of(
    st.just("/fixed"),
    st.integers(0, 200_000).map(lambda n: f"/bytes/{n}"),
    st.sampled_from([200, 204, 301, 304, 404, 410, 429, 500, 503]).map(lambda c: f"/status/{c}"),
    st.integers(0, 3).map(lambda k: f"/fail/{k}/x"),
    st.just("/reset"),
    st.integers(2, 100_000).map(lambda n: f"/reset-mid/{n}"),
    st.sampled_from(["ftp://x/f", "file:///etc/hostname", "gopher://x/"]).map(
        lambda target: f"/redirect-to?url={quote(target, safe='')}"
    ),
    st.integers(2, 100_000).map(lambda n: f"/short/{n}"),
    st.integers(0, DEFAULT_MAX_REDIRECTS + 2).map(lambda n: f"/redirect/{n}"),
    st.integers(0, 1 << 20).map(lambda n: f"/gzip/{n}"),
    st.integers(0, 200).map(lambda ms: f"/delay/{ms}"),
)

bad_texts = st.sampled_from(
    [
        "ftp://x",
        "",
        "   ",
        "# c",
        "  # indented comment",
        "http://",
        "https:///no-host",
        "not a url",
        "nul\x00byte",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "mailto:someone@example.com",
        "\tftp://x\t",
    ]
)

lines = st.lists(
    st.one_of(server_paths.map(lambda p: Line(path=p)), bad_texts.map(lambda t: Line(text=t))),
    min_size=1,
    max_size=15,
)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[PracticeServer]:
    with PracticeServer() as srv:
        yield srv


def _expected_ok(path: str, opts: Options) -> bool | None:
    """Whether the URL must end ok, where the practice server makes that certain (else None)."""
    kind, _, arg = path.strip("/").partition("/")
    limit = opts.max_bytes
    match kind:
        case "fixed":
            return limit is None or limit >= 200
        case "bytes" | "gzip":
            return limit is None or int(arg) <= limit
        case "status":
            code = int(arg)
            if code == 301:
                return limit is None or limit >= 200  # lands on /fixed
            return code < 400
        case "fail":
            return int(arg.split("/")[0]) <= opts.retries  # 503 K times, then 200
        case "reset" | "reset-mid" | "short" | "redirect-to":
            return False
        case "redirect":
            return int(arg) <= DEFAULT_MAX_REDIRECTS
        case _:
            return None  # /delay: a slow machine may hit the timeout


def _hops(path: str) -> int:
    """Redirects the practice server makes a path go through (before the final answer)."""
    kind, _, arg = path.strip("/").partition("/")
    if kind == "redirect":
        return min(int(arg), DEFAULT_MAX_REDIRECTS)
    return 1 if path == "/status/301" else 0


@pytest.mark.integration
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(opts=options, url_lines=lines)
def test_cli_invariants_hold_under_fuzzing(
    fuzz_server: PracticeServer, opts: Options, url_lines: list[Line]
) -> None:
    example = next(_example_ids)
    texts: list[str] = []
    for index, line in enumerate(url_lines):
        if line.path is not None:  # unique per example and line: /fail counts per exact path
            joiner = "&" if "?" in line.path else "?"
            texts.append(f"{fuzz_server.url}{line.path}{joiner}e={example}&i={index}")
        else:
            assert line.text is not None
            texts.append(line.text)
    with tempfile.TemporaryDirectory(prefix="poolfetch-fuzz-") as tmp:
        cwd = Path(tmp)
        (cwd / "urls.txt").write_bytes(("\n".join(texts) + "\n").encode())
        try:
            result = run_cli("run", "urls.txt", *opts.args(), cwd=cwd, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"CLI did not finish within {RUN_TIMEOUT_S} s: {opts} {texts!r}")
        _check(result.code, result.stderr, result.records, texts, opts, fuzz_server.url, cwd)


def _check(
    code: int,
    stderr: str,
    records: list[dict[str, object]],
    texts: list[str],
    opts: Options,
    base: str,
    cwd: Path,
) -> None:
    context = f"options={opts} lines={texts!r} stderr={stderr[-800:]!r}"
    assert "Traceback" not in stderr, context
    assert code in (0, 1), context
    wanted = [t.strip(ASCII_SPACE) for t in texts]
    wanted = [t for t in wanted if t and not t.startswith("#")]
    assert collections.Counter(r["url"] for r in records) == collections.Counter(wanted), context
    paths: set[str] = set()
    for record in records:
        assert record.keys() >= RECORD_KEYS, (record, context)
        url = str(record["url"])
        status, ok, error, attempts = (
            record["status"],
            record["ok"],
            record["error"],
            record["attempts"],
        )
        assert isinstance(attempts, int)
        if record.get("skipped") is None:
            # The contract: ok is true for a final status below 400. A response whose body then
            # broke keeps the status it arrived with (e.g. 200) and is not ok: so the strict
            # form holds for every record without an error.
            if error is None:
                assert ok == (isinstance(status, int) and status < 400), (record, context)
            else:
                assert ok is False and isinstance(error, str), (record, context)
            if ok:
                assert isinstance(status, int) and status < 400, (record, context)
        if not url.startswith(base + "/"):
            assert (ok, status, attempts) == (False, None, 0), (record, context)
            assert isinstance(error, str) and error, (record, context)
            continue
        path = url[len(base) :].split("?", 1)[0]
        # every request sent is an attempt: retries, and each redirect hop
        assert 1 <= attempts <= opts.retries + 1 + _hops(path), (record, context)
        expected = _expected_ok(path, opts)
        if expected is not None:
            assert ok is expected, (record, context)
        if record["path"] is not None:
            assert ok and opts.output, (record, context)
            saved = cwd / str(record["path"])
            assert saved.is_file() and saved.stat().st_size == record["bytes"], (record, context)
            paths.add(str(saved))
        elif ok and opts.output:
            assert isinstance(status, int) and not 200 <= status < 300, (record, context)
    assert (code == 0) == all(r["ok"] for r in records), context
    out = cwd / "out"
    files = {str(p) for p in out.rglob("*") if p.is_file()} if out.exists() else set()
    assert not [f for f in files if Path(f).name.startswith(".poolfetch-")], context
    assert files == paths, context  # nothing saved but the bodies of ok records
