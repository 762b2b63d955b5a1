"""The README and ``--help`` agree with what poolfetch does (what a new user reads first)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from poolfetch.cli import main as cli_main
from poolfetch.core.exit_codes import ExitCode

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _readme_exit_codes() -> set[str]:
    section = README.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = set()
    for row in re.findall(r"^\| ([\d /]+) \|", section, re.MULTILINE):
        codes.update(c for c in row.split("/") if c.strip().isdigit())
    return {c.strip() for c in codes}


def test_run_help_and_the_cli_docstring_list_every_exit_code_of_the_readme():
    codes = _readme_exit_codes()
    assert {"0", "1", "2", "69", "75", "130", "141", "143"} <= codes
    shown = CliRunner().invoke(cli_main.cli, ["run", "--help"]).output
    epilog = shown.split("Exit codes:", 1)[1]
    docstring = (cli_main.__doc__ or "").split("Exit codes", 1)[1]
    for code in codes:
        assert re.search(rf"\b{code}\b", epilog), f"run --help lacks exit code {code}"
        assert re.search(rf"\b{code}\b", docstring), f"main.py docstring lacks exit code {code}"


def test_every_exit_code_of_the_enum_is_documented_and_every_documented_one_is_in_it():
    documented = {int(code) for code in _readme_exit_codes()}
    members = {int(member) for member in ExitCode}
    assert members - documented == set(), "ExitCode members missing from the README table"
    assert documented - members == set(), "README exit codes that are no ExitCode member"


def test_the_redis_example_reads_a_file_that_ships_with_poolfetch():
    (example,) = [line for line in README.splitlines() if line.startswith("poolfetch run --redis")]
    sources = [word for word in example.split() if word.endswith(".txt")]
    assert sources and all((ROOT / source).is_file() for source in sources), example


def test_the_readme_says_what_burst_allows_and_what_stderr_carries():
    rates = README.split("- `--qps RATE` / `--burst N`", 1)[1].split("\n- ", 1)[0]
    assert "at once" in rates  # a burst of N starts N requests at once; 1 means none
    shown = CliRunner().invoke(cli_main.cli, ["run", "--help"]).output
    assert "at once" in shown.split("--burst", 1)[1].split("--per-host-qps", 1)[0]
    assert "one\nsummary line" not in README and "up to three lines" in README


def test_the_readme_documents_the_record_and_summary_keys_of_a_shared_run():
    shared = README.split("## More than one machine", 1)[1].split("\n## ", 1)[0]
    assert "`worker`" in shared
    assert "`0` for the coordinator" in README  # its summary says sessions: 0


def test_the_offline_sample_is_named_in_the_readme_and_in_the_online_one():
    assert (ROOT / "sample_local_urls.txt").is_file()
    assert "sample_local_urls.txt" in README
    assert "sample_local_urls.txt" in (ROOT / "sample_urls.txt").read_text()
