"""``-v`` logging to stderr through the standard logging module, with credentials redacted.

``-v`` logs poolfetch's own decisions (retries, pauses) and urllib3's warnings (malformed
headers); ``-vv`` adds urllib3's connection messages (new connections). Every line passes a
filter that removes the values of credential headers and URL passwords, so ``-vv`` output can
be pasted into a bug report.
"""

from __future__ import annotations

import logging

from poolfetch.core.redact import redact_text


class RedactingFilter(logging.Filter):
    """Replaces secret values and URL passwords in every record's final message."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message, self._secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(verbose: int, quiet: bool, secrets: tuple[str, ...]) -> None:
    """Configure the root logger once for a CLI run."""
    level = logging.ERROR if quiet else logging.WARNING
    if verbose >= 1:
        level = logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("poolfetch: %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("poolfetch").setLevel(logging.DEBUG if verbose >= 2 else level)
    # urllib3 logs malformed server headers with a traceback at WARNING: a server's fault, not
    # ours, and the record already says what failed. Shown from -v on.
    urllib3_level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.getLogger("urllib3").setLevel(urllib3_level)
