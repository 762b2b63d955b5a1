"""Outputs that would overwrite an input or the state (``cli/clobber.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from poolfetch.cli.clobber import clobbered


def test_an_output_naming_a_source_the_state_or_the_other_output_is_refused(
    tmp_path: Path,
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1/\n")
    os.link(urls, tmp_path / "alias.txt")
    via_dots = str(tmp_path / "sub" / ".." / "urls.txt")
    state = tmp_path / "s.db"
    new = str(tmp_path / "new.jsonl")  # not created yet: still one file with itself
    assert clobbered([str(urls)], via_dots, None, None) == (
        f"--results {via_dots} is also source {urls}: writing it would destroy it"
    )
    assert clobbered([str(urls)], "-", tmp_path / "alias.txt", None) is not None
    assert clobbered(["-"], str(state), None, state) is not None
    assert clobbered(["-"], new, Path(new), None) is not None


def test_distinct_files_standard_streams_and_devices_are_accepted(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1/\n")
    out = str(tmp_path / "out.jsonl")
    assert clobbered([str(urls), "-"], out, tmp_path / "s.json", tmp_path / "s.db") is None
    assert clobbered(["-"], "-", None, None) is None
    assert clobbered([str(urls)], os.devnull, Path(os.devnull), None) is None
