"""Content codings through the real CLI: ``br`` and ``zstd`` are asked for and decoded (the
saved file is the content, not the compressed bytes); a coding that cannot be decoded fails
the URL naming the coding, and nothing is saved as if it were the body."""

from __future__ import annotations

import gzip
from pathlib import Path

import brotli
import pytest
from backports import zstd
from rawserver import RawServer, encoded_body
from support import run_cli, write_urls

BODY = b"poolfetch decodes what it asks for\n" * 200
CODERS = {"br": brotli.compress, "zstd": zstd.compress}


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_brotli_and_zstd_bodies_are_saved_decoded(tmp_path: Path, coding: str) -> None:
    with RawServer(encoded_body(coding, CODERS[coding](BODY))) as origin:
        urls = write_urls(tmp_path / "u.txt", [f"{origin.url}/{coding}"])
        result = run_cli("run", str(urls), "-o", "out", "--retries", "0", cwd=tmp_path)
        [head] = origin.requests
    assert result.code == 0, result.stdout + result.stderr
    [record] = result.records
    assert record["bytes"] == len(BODY)
    assert (tmp_path / record["path"]).read_bytes() == BODY
    accept = next(
        line
        for line in head.decode("latin-1").split("\r\n")
        if line.lower().startswith("accept-encoding:")
    )
    offered = {c.strip() for c in accept.split(":", 1)[1].split(",")}
    assert {"gzip", "br", "zstd"} <= offered, accept


@pytest.mark.parametrize(
    ("coding", "body", "named"),
    [
        ("xz", b"\xfd7zXZ\x00\x00 not decodable here", "'xz'"),
        ("gzip, compress", gzip.compress(BODY), "'compress'"),
        ("br", b"this is not brotli data at all" * 10, "br"),
        ("zstd", b"this is not zstd data either!!" * 10, "zstd"),
    ],
)
def test_a_body_that_cannot_be_decoded_fails_naming_the_coding(
    tmp_path: Path, coding: str, body: bytes, named: str
) -> None:
    with RawServer(encoded_body(coding, body)) as origin:
        urls = write_urls(tmp_path / "u.txt", [f"{origin.url}/odd"])
        result = run_cli("run", str(urls), "-o", "out", "--backoff", "0.1", cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 1
    [record] = result.records
    assert record["ok"] is False and record["path"] is None
    assert record["attempts"] == 1, record  # the same bytes would come again: final
    error = record["error"]
    assert "decode" in error and named in error, error
    out = tmp_path / "out"
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
