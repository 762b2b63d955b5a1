"""Content codings: which ``Content-Encoding`` values a body can be decoded from.

urllib3 decodes ``gzip``, ``deflate`` and, with the packages of ``urllib3[brotli,zstd]`` (a
dependency: ``brotli``, ``backports.zstd``), ``br`` and ``zstd``; ``requests`` advertises exactly
those in ``Accept-Encoding``. A coding urllib3 does not know is passed through *undecoded*, so
a body would be saved still compressed and recorded ok: ``check_codings`` refuses it before
the body is read, naming the coding.
"""

from __future__ import annotations

from urllib3.response import HTTPResponse

from poolfetch.core.errors import ContentCodingError

#: Codings urllib3 can decode in this installation (``br``/``zstd`` only with their packages).
DECODABLE: frozenset[str] = frozenset(HTTPResponse.CONTENT_DECODERS) | {"identity"}


def check_codings(content_encoding: str | None) -> None:
    """Raise ``ContentCodingError`` unless every coding in the header can be decoded."""
    if not content_encoding:
        return
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    unknown = [c for c in codings if c and c not in DECODABLE]
    if unknown:
        known = ", ".join(sorted(DECODABLE - {"identity", "x-gzip"}))
        shown = repr(", ".join(unknown)[:100])  # server text: repr escapes control characters
        raise ContentCodingError(
            f"cannot decode Content-Encoding {shown} (poolfetch decodes {known})"
        )


def decoding_failed(detail: str) -> ContentCodingError:
    """The error for a body whose data does not decode (urllib3's message names the coding)."""
    return ContentCodingError(f"cannot decode the body ({detail})")
