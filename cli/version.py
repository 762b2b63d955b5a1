"""The installed version of poolfetch (one place, for --version and the User-Agent)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("poolfetch")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
