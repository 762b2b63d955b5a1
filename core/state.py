"""The ``--state`` database: SQLite (WAL), one row per URL, the runs made with it.

It serves two things with one file:

* **resume**: if the last run on this file did not finish (killed, SIGINT, SIGTERM), the next
  run with it skips the URLs already ok *in that run* and fetches the rest;
* **conditional re-fetch**: a new run sends ``If-None-Match`` / ``If-Modified-Since`` for URLs
  with stored validators whose body is still there (under the same ``-o DIR``); ``304`` keeps it.

Only the main thread writes, in small transactions (every ``COMMIT_EVERY`` records or
``COMMIT_INTERVAL_S``), so ``kill -9`` loses at most the last uncommitted results and never
corrupts the file. A URL is recorded ok only after its body was renamed into place. A second
process on the same file is refused at once (``flock`` on ``FILE.lock``, released by the kernel
when the holder dies, so a killed run never leaves a stale lock).

Schema versions live in ``PRAGMA user_version``; ``_MIGRATIONS[n]`` turns version n into n + 1.

A row is keyed by its request (``request.request_key``: method, URL and body digest) in the
column ``url``: for a GET without a body the key is the URL itself, so the rows of a file
written before requests had methods keep their meaning unchanged.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from poolfetch.core.errors import StateError, StateLockedError
from poolfetch.core.models import AttemptOutcome, FetchResult
from poolfetch.core.request import GET_REQUEST, RequestSpec

COMMIT_EVERY = 200
COMMIT_INTERVAL_S = 1.0

_SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE urls (
    url TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    status INTEGER,
    path TEXT,
    etag TEXT,
    last_modified TEXT,
    fetched_at REAL NOT NULL
);
"""

_MIGRATIONS: dict[int, str] = {
    # v1 -> v2: attempts, bytes and a body digest per URL; how each run ended.
    1: """
    ALTER TABLE urls ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE urls ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE urls ADD COLUMN digest TEXT;
    ALTER TABLE runs ADD COLUMN outcome TEXT;
    UPDATE runs SET outcome = CASE WHEN finished_at IS NULL THEN 'interrupted' ELSE 'finished' END;
    """,
    # v2 -> v3: rows keyed by request (method, URL, body digest; the URL alone for a GET without
    # a body, as every v2 row is), the method and body digest shown apart, and where the last
    # good fetch ended (final URL, content type) for the records of a resumed run.
    2: """
    ALTER TABLE urls ADD COLUMN method TEXT NOT NULL DEFAULT 'GET';
    ALTER TABLE urls ADD COLUMN body_sha256 TEXT;
    ALTER TABLE urls ADD COLUMN final_url TEXT;
    ALTER TABLE urls ADD COLUMN content_type TEXT;
    """,
    # v3 -> v4: partial bodies kept by -C, keyed like the rows (file, If-Range validator, bytes
    # held when cut off).
    3: """
    CREATE TABLE partials (
        url TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        validator TEXT NOT NULL,
        held INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    """,
}
SCHEMA_VERSION = 4


@dataclass(frozen=True, slots=True)
class StoredUrl:
    """What the state knows of one request, as the runner needs it."""

    done_in_run: bool
    status: int | None
    path: str | None
    bytes: int
    validators: tuple[tuple[str, str], ...]
    digest: str | None = None
    final_url: str | None = None
    content_type: str | None = None


class StateStore:
    """One state file, opened by one run at a time (main thread only)."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        *,
        output_dir: Path | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        #: The run's ``-o DIR`` (resolved): validators are sent only for bodies inside it.
        self._output_root = os.path.realpath(output_dir) if output_dir is not None else None
        self._lock_fd = self._acquire_lock(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise StateError(f"--state {path}: {exc}") from exc
        self._run_id = 0
        self._resumed_run: int | None = None
        self._uncommitted = 0
        self._last_commit = 0.0
        self.resumed = False
        #: The last run on this file did not finish (it may have left temporary files behind).
        self.follows_interrupted = False

    @staticmethod
    def _acquire_lock(path: Path) -> int:
        lock_path = path.with_name(path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise StateError(f"--state {path}: cannot create {lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StateLockedError(
                f"--state {path} is in use by another poolfetch run; nothing was done"
            ) from exc
        return fd

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state schema {version} is newer than this poolfetch ({SCHEMA_VERSION})"
            )
        if version == 0:
            self._db.executescript("BEGIN;" + _SCHEMA_V1 + "PRAGMA user_version = 1; COMMIT;")
            version = 1
        while version < SCHEMA_VERSION:
            script = _MIGRATIONS[version]
            self._db.executescript(f"BEGIN;{script}PRAGMA user_version = {version + 1}; COMMIT;")
            version += 1

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def begin(self, refresh: bool) -> None:
        """Start a run: resume the last one if it was interrupted (unless ``refresh``)."""
        last = self._db.execute("SELECT id, outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        self.follows_interrupted = last is not None and last[1] != "finished"
        if self.follows_interrupted and not refresh:
            self._run_id = last[0]
            self._resumed_run = last[0]
            self.resumed = True
            self._db.execute("UPDATE runs SET outcome = 'running' WHERE id = ?", (self._run_id,))
        else:
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, outcome) VALUES (?, 'running')", (self._clock(),)
            )
            self._run_id = int(cursor.lastrowid or 0)
        self._db.execute("BEGIN")
        self._last_commit = time.monotonic()

    def lookup(self, key: str) -> StoredUrl | None:
        """What is stored for the request keyed ``key`` (``request_key``), or None."""
        row = self._db.execute(
            "SELECT run_id, ok, status, path, bytes, etag, last_modified, digest, final_url,"
            " content_type FROM urls WHERE url = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        run_id, ok, status, path, size, etag, last_modified, digest, final, ctype = row
        done = bool(ok) and self._resumed_run is not None and run_id == self._resumed_run
        validators: list[tuple[str, str]] = []
        if self._has_body(path):
            if etag:
                validators.append(("If-None-Match", etag))
            if last_modified:
                validators.append(("If-Modified-Since", last_modified))
        return StoredUrl(done, status, path, size, tuple(validators), digest, final, ctype)

    def _has_body(self, path: str | None) -> bool:
        """Whether the run has the body the stored validators describe (a failure keeps the
        last good one), so a 304 leaves it with one: without ``-o`` no body is wanted (unless
        the stored one is gone); with ``-o DIR`` the body must exist under that same DIR."""
        if self._output_root is None:
            return path is None or os.path.exists(path)
        if path is None or not os.path.exists(path):
            return False
        return os.path.realpath(path).startswith(os.path.join(self._output_root, ""))

    def record(
        self,
        key: str,
        result: FetchResult,
        outcome: AttemptOutcome,
        request: RequestSpec = GET_REQUEST,
    ) -> None:
        """Remember a finished request, keyed ``key`` (called after its body file is in place)."""
        now = self._clock()
        if result.unchanged or not result.ok:
            # a 304 or a failure keeps the body, path and validators of the last good fetch
            self._db.execute(
                "INSERT INTO urls (url, run_id, ok, status, fetched_at, attempts, bytes, method,"
                " body_sha256) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET"
                " run_id = excluded.run_id, ok = excluded.ok,"
                " status = CASE WHEN excluded.ok THEN status ELSE excluded.status END,"
                " attempts = excluded.attempts, fetched_at = excluded.fetched_at",
                (
                    key,
                    self._run_id,
                    int(result.ok),
                    result.status,
                    now,
                    result.attempts,
                    0,
                    request.method,
                    request.body_sha256,
                ),
            )
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO urls (url, run_id, ok, status, path, etag, last_modified,"
                " fetched_at, attempts, bytes, digest, method, body_sha256, final_url,"
                " content_type) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    self._run_id,
                    1,
                    result.status,
                    result.path,
                    outcome.etag,
                    outcome.last_modified,
                    now,
                    result.attempts,
                    result.bytes,
                    outcome.digest,
                    request.method,
                    request.body_sha256,
                    result.final_url,
                    result.content_type,
                ),
            )
            self._db.execute("DELETE FROM partials WHERE url = ?", (key,))  # now complete
        self._uncommitted += 1
        if self._uncommitted >= COMMIT_EVERY:
            self._commit()
        else:
            self.commit_if_due()

    # -- partial bodies (-C) -------------------------------------------------------------

    def partial(self, key: str) -> tuple[str, str, int] | None:
        """The partial body the state holds for the request ``key``: its path, validator and
        bytes held."""
        row = self._db.execute(
            "SELECT path, validator, held FROM partials WHERE url = ?", (key,)
        ).fetchone()
        return None if row is None else (row[0], row[1], int(row[2]))

    def partial_started(self, key: str, path: str, validator: str) -> None:
        """A partial file is being written under ``validator``: recorded and committed now,
        before the worker writes more than its first piece."""
        self._db.execute(
            "INSERT OR REPLACE INTO partials (url, path, validator, held, updated_at)"
            " VALUES (?,?,?,0,?)",
            (key, path, validator, self._clock()),
        )
        self._commit()

    def partial_kept(self, key: str, held: int) -> None:
        """A partial file was cut off holding ``held`` bytes (already fsynced)."""
        self._db.execute(
            "UPDATE partials SET held = ?, updated_at = ? WHERE url = ?",
            (held, self._clock(), key),
        )
        self._uncommitted += 1

    def partial_dropped(self, key: str) -> None:
        self._db.execute("DELETE FROM partials WHERE url = ?", (key,))
        self._uncommitted += 1

    def stale_partials(self) -> list[str]:
        """Paths of the partial bodies of requests this run did not see (no longer in the
        list); their rows are deleted, the caller removes the files."""
        rows = self._db.execute(
            "SELECT url, path FROM partials WHERE url NOT IN"
            " (SELECT url FROM urls WHERE run_id = ?)",
            (self._run_id,),
        ).fetchall()
        self._db.executemany("DELETE FROM partials WHERE url = ?", [(row[0],) for row in rows])
        return [row[1] for row in rows]

    def commit_if_due(self) -> None:
        """Commit what is pending once ``COMMIT_INTERVAL_S`` has passed since the last commit.

        Called on every result and from the runner's main loop, so a result is never held
        uncommitted for much longer than the interval, even when no other URL finishes after it
        (a slow tail): a ``kill -9`` then loses at most about a second of results.
        """
        if self._uncommitted and time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self._commit()

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        self._uncommitted = 0
        self._last_commit = time.monotonic()

    def finish(self, completed: bool) -> None:
        """Commit everything and mark the run finished (or interrupted); release the lock."""
        try:
            outcome = "finished" if completed else "interrupted"
            self._db.execute(
                "UPDATE runs SET outcome = ?, finished_at = ? WHERE id = ?",
                (outcome, self._clock() if completed else None, self._run_id),
            )
            if self._db.in_transaction:  # not when the run never began
                self._db.execute("COMMIT")
            self._db.close()
        finally:
            os.close(self._lock_fd)
