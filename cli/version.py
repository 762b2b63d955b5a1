"""The version of poolfetch: one place, read by --version, the User-Agent and the build.

A literal rather than ``importlib.metadata.version("poolfetch")``: looking the installed
distribution up costs about 60 ms of every start-up, and pyproject.toml takes the version from
here (``[tool.setuptools.dynamic]``), so the two cannot disagree.
"""

from __future__ import annotations

__version__ = "0.1.0"
