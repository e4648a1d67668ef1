"""JobStore: SQLite (WAL) job history with a versioned schema, written before anything is sent."""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from backlot.services.errors import BacklotError
from backlot.services.models import Job

log = logging.getLogger(__name__)
T = TypeVar("T")

# Each entry moves the schema one version up; never edit a shipped one, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, task TEXT NOT NULL, prompt TEXT NOT NULL,
        params TEXT NOT NULL, inputs TEXT NOT NULL, requested_backend TEXT NOT NULL, routed_to TEXT,
        route TEXT NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL, attempts TEXT NOT NULL, error TEXT,
        outputs TEXT NOT NULL, remote_ref TEXT, client TEXT NOT NULL, cancel_requested INTEGER NOT NULL,
        created_at REAL NOT NULL, started_at REAL, finished_at REAL, updated_at REAL NOT NULL);
    CREATE INDEX jobs_state ON jobs(state);
    CREATE INDEX jobs_task ON jobs(task);
    CREATE INDEX jobs_backend ON jobs(routed_to);
    CREATE INDEX jobs_created ON jobs(created_at);
    """,
    """
    CREATE TABLE job_samples (
        backend TEXT NOT NULL, task TEXT NOT NULL, size_bucket INTEGER NOT NULL, peak_vram INTEGER,
        duration_s REAL NOT NULL, at REAL NOT NULL);
    CREATE INDEX job_samples_key ON job_samples(backend, task, size_bucket);
    """,
]
JSON_FIELDS = ("params", "inputs", "route", "status", "attempts", "error", "outputs")


class StoreError(BacklotError):
    """The job database cannot be written or read; the message says what to do."""


def _explain(err: sqlite3.Error, path: Path) -> StoreError:
    text = str(err).lower()
    if "readonly" in text or "read-only" in text:
        return StoreError(f"the job database {path} is read-only; make {path.parent} writable or set data_dir")
    if "full" in text:
        return StoreError(f"the disk holding {path} is full; free some space (nothing was written)")
    if "unable to open" in text:
        return StoreError(f"cannot open the job database in {path.parent}; check that it exists and is writable")
    return StoreError(f"the job database {path} failed: {err}")


class JobStore:
    """All SQLite work happens on one dedicated thread, so the event loop never blocks on disk."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only  # a client reading history while no instance runs: never writes, never migrates
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobstore")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def open(self) -> None:
        """Open (creating and migrating as needed); raises StoreError with a clear sentence."""
        await self._run(self._open)

    def _open(self) -> None:
        if self.read_only:
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the data folder {self.path.parent}: {err.strerror}") from err
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.execute("BEGIN")
                for stmt in filter(str.strip, script.split(";")):
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version={n}")
                db.execute("COMMIT")
                log.info("job database %s migrated to schema %d", self.path, n)
            db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as err:
            raise _explain(err, self.path) from err
        self._db = db

    def _open_read_only(self) -> None:
        if not self.path.exists():
            self._db = sqlite3.connect(":memory:", check_same_thread=False)  # no database yet: no jobs
            for stmt in filter(str.strip, ";".join(MIGRATIONS).split(";")):
                self._db.execute(stmt)
            return
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as err:
            raise _explain(err, self.path) from err
        if version < len(MIGRATIONS):
            db.close()
            raise StoreError(f"the job database {self.path} is from an older Backlot; start Backlot once to "
                             "upgrade it")
        self._db = db

    @property
    def schema_version(self) -> int:
        """The schema version on disk (after open)."""
        assert self._db is not None
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    async def close(self) -> None:
        """Close the database and its thread."""
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        await self._run(_close)
        self._pool.shutdown(wait=True)

    def _write(self, sql: str, args: tuple[Any, ...] | Callable[[], tuple[Any, ...]],
               before: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """One write transaction; ``before`` runs inside it, under the write lock, and ``args`` may be built after it."""
        assert self._db is not None, "store not open"
        try:
            self._db.execute("BEGIN IMMEDIATE")
            if before is not None:
                before(self._db)
            self._db.execute(sql, args() if callable(args) else args)
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise _explain(err, self.path) from err

    async def insert(self, job: Job) -> None:
        """Write a new job (assigns ``job.seq``); nothing is written if it fails."""
        def number(db: sqlite3.Connection) -> None:
            # Read the next number inside the write transaction: a second Backlot on the same
            # home (a CLI guest beside the running instance) cannot take the same one.
            job.seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0])

        cols, _ = _row(job)
        sql = f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        await self._run(lambda: self._write(sql, lambda: _row(job)[1], before=number))

    async def update(self, job: Job) -> None:
        """Persist every field of a job (each state change goes through here)."""
        job.updated_at = time.time()
        cols, vals = _row(job)
        sets = ", ".join(f"{c} = ?" for c in cols if c != "id")
        args = tuple(v for c, v in zip(cols, vals) if c != "id") + (job.id,)
        await self._run(lambda: self._write(f"UPDATE jobs SET {sets} WHERE id = ?", args))

    async def get(self, job_id: str) -> Job | None:
        """One job by id (or by its number shown in the console)."""
        number = int(job_id) if job_id.isdigit() and len(job_id) < 12 else -1  # ids are 12 hex digits
        rows = await self.query(where="id = ? OR seq = ?", args=(job_id, number), limit=1)  # both indexed
        return rows[0] if rows else None

    async def query(self, *, state: str | None = None, task: str | None = None, backend: str | None = None,
                    since: float | None = None, where: str = "", args: tuple[Any, ...] = (),
                    limit: int = 200) -> list[Job]:
        """History, newest first, filtered by state, task, backend and creation time."""
        clauses, params = ([where] if where else []), list(args)
        for col, value in (("state", state), ("task", task), ("routed_to", backend)):
            if value is not None:
                clauses.append(f"{col} = ?")
                params.append(value)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(clauses)}" if clauses else "") + " ORDER BY seq DESC LIMIT ?"
        params.append(limit)

        def _query() -> list[Job]:
            assert self._db is not None, "store not open"
            cur = self._db.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [_job(dict(zip(names, r))) for r in cur.fetchall()]
        return await self._run(_query)

    async def record_sample(self, backend: str, task: str, size_bucket: int, peak_vram: int | None,
                            duration_s: float) -> None:
        """Remember what a finished job took, for VRAM admission and ETAs."""
        await self._run(lambda: self._write(
            "INSERT INTO job_samples (backend, task, size_bucket, peak_vram, duration_s, at) VALUES (?, ?, ?, ?, ?, ?)",
            (backend, task, size_bucket, peak_vram, duration_s, time.time())))

    async def peak_samples(self) -> list[tuple[str, str, int, int]]:
        """Every recorded (backend, task, size bucket, peak VRAM), newest first (loaded once at start)."""
        def _q() -> list[tuple[str, str, int, int]]:
            assert self._db is not None, "store not open"
            return [(r[0], r[1], r[2], r[3]) for r in self._db.execute(
                "SELECT backend, task, size_bucket, peak_vram FROM job_samples WHERE peak_vram IS NOT NULL "
                "ORDER BY at DESC")]
        return await self._run(_q)

    async def samples(self, backend: str, task: str, size_bucket: int, limit: int = 20) -> list[tuple[int | None, float]]:
        """Recent (peak VRAM, duration) pairs for one backend, task and size."""
        def _q() -> list[tuple[int | None, float]]:
            assert self._db is not None, "store not open"
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT peak_vram, duration_s FROM job_samples WHERE backend = ? AND task = ? AND size_bucket = ? "
                "ORDER BY at DESC LIMIT ?", (backend, task, size_bucket, limit))]
        return await self._run(_q)


def _row(job: Job) -> tuple[list[str], tuple[Any, ...]]:
    """A job's columns: its wire form, with the attempt log in ``attempts`` (the JSON rows have always held)."""
    d = job.to_dict()
    d["attempts"] = d.pop("attempt_log")
    d["cancel_requested"] = int(job.cancel_requested)
    cols = list(d)
    return cols, tuple(json.dumps(d[c]) if c in JSON_FIELDS else d[c] for c in cols)


def _job(row: dict[str, Any]) -> Job:
    """A row back as a Job: the same JSON read into the job's models."""
    for c in JSON_FIELDS:
        row[c] = json.loads(row[c]) if row[c] is not None else None
    row["attempt_log"] = row.pop("attempts")
    return Job.from_dict(row)
