"""Body file names (sinks.body_name) and the BodyStore that writes them under --output-dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from poolfetch.core.errors import ConfigError, OutputError
from poolfetch.core.sinks import TEMP_PREFIX, TEMP_SUFFIX, BodyStore, body_name

HOSTS = ["example.com", "Example.COM:8443", "[::1]:8080", "127.0.0.1", "con", "a-b.example"]

_path_piece = st.one_of(
    st.sampled_from(["/", "..", ".", "%2e%2e", "%2F", "\\", "~", "CON", "nul.txt", ".hidden", "."]),
    st.text(max_size=12),
    st.text(alphabet="ab.", min_size=200, max_size=400),  # very long segments
)
_path = st.lists(_path_piece, max_size=12).map("".join)
_url = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https", "HTTP"]),
    st.sampled_from(HOSTS),
    _path,
)


def _components(url: str) -> list[str]:
    folders, name = body_name(url)
    return [*folders, name]


@given(_url)
@example("http://example.com/../../etc/passwd")
@example("http://example.com/%2e%2e/%2e%2e/x")
@example("http://example.com/a\\..\\..\\b")
@example("http://example.com/" + "/".join(["d"] * 50) + "/f")
@example("http://example.com/" + "é" * 300)
@example("http://example.com/.")
@example("http://example.com/a/..")
@settings(max_examples=300, deadline=None)
def test_every_component_is_a_safe_single_name(url):
    for part in _components(url):
        assert part
        assert part not in (".", "..")
        assert "/" not in part
        assert "\\" not in part
        assert "\x00" not in part
        assert len(part.encode()) <= 255


@given(_url)
@example("http://example.com/../../../../outside")
@settings(max_examples=200, deadline=None)
def test_joined_path_stays_inside_the_root(url):
    root = os.path.realpath("/srv/out")
    joined = os.path.normpath(os.path.join(root, *_components(url)))
    assert os.path.commonpath([root, joined]) == root
    assert joined != root


@given(st.sets(_url, min_size=2, max_size=60))
@settings(max_examples=100, deadline=None)
def test_distinct_urls_get_distinct_names(urls):
    names = {body_name(url) for url in urls}
    assert len(names) == len(urls)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/Report.json", "http://example.com/report.json"),
        ("http://example.com/A/x", "http://example.com/a/x"),
        ("http://example.com/x?Q=1", "http://example.com/x?q=1"),
        ("http://example.com/a b", "http://example.com/a_b"),
        ("http://example.com/x", "http://example.com/x#frag"),
    ],
)
def test_names_that_differ_only_in_case_or_sanitising_stay_distinct(a, b):
    path_a = "/".join(_components(a)).lower()
    path_b = "/".join(_components(b)).lower()
    assert path_a != path_b


@given(_url)
@settings(max_examples=200, deadline=None)
def test_only_file_names_contain_tilde(url):
    folders, name = body_name(url)
    assert "~" in name
    assert not any("~" in folder for folder in folders)


def test_name_shape():
    folders, name = body_name("https://Example.com:8443/a/b/report.json?x=1")
    assert folders == ("example.com_8443", "a", "b")
    assert name.startswith("report~")
    assert name.endswith(".json")
    folders, name = body_name("https://example.com:443/")
    assert folders == ("example.com",)
    assert name.startswith("index~")
    assert name.endswith(".html")


def test_name_is_deterministic():
    url = "https://example.com/a/b?c=1"
    assert body_name(url) == body_name(url)


# --- BodyStore -----------------------------------------------------------------------------------


def _temp_files(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX)
    ]


def _write(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_create_write_commit_puts_the_body_in_place(tmp_path):
    root = tmp_path / "out"
    store = BodyStore(root)
    try:
        pending, fd = store.create("https://example.com/a/report.json")
        _write(fd, b"hello body")
        assert _temp_files(root)  # not visible under its final name until committed
        path = Path(store.commit(pending))
        assert path.read_bytes() == b"hello body"
        assert path.resolve().is_relative_to(root.resolve())
        assert path.parent == root / "example.com" / "a"
        assert _temp_files(root) == []
    finally:
        store.close()


def test_commit_replaces_an_older_body(tmp_path):
    store = BodyStore(tmp_path)
    try:
        for body in (b"old", b"new"):
            pending, fd = store.create("http://example.com/x")
            _write(fd, body)
            path = store.commit(pending)
        assert Path(path).read_bytes() == b"new"
        assert len(list((tmp_path / "example.com").iterdir())) == 1
    finally:
        store.close()


def test_path_is_relative_when_the_root_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = BodyStore(Path("out"))
    try:
        pending, fd = store.create("http://example.com/x.txt")
        _write(fd, b"x")
        path = store.commit(pending)
        assert not os.path.isabs(path)
        assert path.startswith(os.path.join("out", "example.com") + os.sep)
        assert Path(path).read_bytes() == b"x"
    finally:
        store.close()


def test_discard_removes_the_temp_file(tmp_path):
    store = BodyStore(tmp_path)
    try:
        pending, fd = store.create("http://example.com/x")
        _write(fd, b"partial")
        store.discard(pending)
        store.discard(pending)  # idempotent
        assert _temp_files(tmp_path) == []
        assert not Path(pending.path).exists()
        with pytest.raises(OutputError):
            store.commit(pending)
    finally:
        store.close()


def test_close_removes_pending_temp_files(tmp_path):
    store = BodyStore(tmp_path)
    for i in range(3):
        _, fd = store.create(f"http://example.com/{i}")
        _write(fd, b"partial")
    assert len(_temp_files(tmp_path)) == 3
    store.close()
    assert _temp_files(tmp_path) == []


def test_no_new_files_after_close(tmp_path):
    store = BodyStore(tmp_path)
    store.close()
    with pytest.raises(OutputError):
        store.create("http://example.com/x")


def test_symlinked_host_folder_is_not_followed(tmp_path):
    root = tmp_path / "out"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "example.com").symlink_to(outside, target_is_directory=True)
    store = BodyStore(root)
    try:
        with pytest.raises(OutputError):
            store.create("http://example.com/a/x.txt")
        with pytest.raises(OutputError):
            store.create("http://example.com/x.txt")
    finally:
        store.close()
    assert list(outside.iterdir()) == []


def test_symlinked_subfolder_is_not_followed(tmp_path):
    root = tmp_path / "out"
    outside = tmp_path / "outside"
    (root / "example.com").mkdir(parents=True)
    outside.mkdir()
    (root / "example.com" / "a").symlink_to(outside, target_is_directory=True)
    store = BodyStore(root)
    try:
        with pytest.raises(OutputError):
            store.create("http://example.com/a/x.txt")
    finally:
        store.close()
    assert list(outside.iterdir()) == []


def test_symlinked_root_is_a_config_error(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(ConfigError):
        BodyStore(link)


def test_root_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError):
        BodyStore(tmp_path / "file")
