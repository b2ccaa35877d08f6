"""The local object store: SQLite in WAL mode, one row per object, one transaction per event.

Why this shape:
- One transaction per event (object row + the kind's resourceVersion together) means a
  crash at any point (`kill -9`, power loss with WAL + synchronous=NORMAL) leaves the
  store at some event boundary: never half an event.
- Full objects live only here (not in memory); the agent keeps compact data in RAM, and
  the page cache is kept small on purpose.
- A store that is corrupt or has a foreign schema is moved aside (never deleted: an
  operator may want it) and rebuilt from the API; a crash loop would be worse.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator

from edgesite_agent.events import EventType, KubeObject
from edgesite_agent.versions import Versions

try:
    # The C module the sqlite3 package re-exports (same classes, same exceptions). The
    # package's dbapi2 also imports datetime to register date adapters the store never
    # uses: about 0.3 MiB resident for the agent's life (docs/agent.md).
    import _sqlite3 as sqlite3
except ImportError:  # an interpreter that builds sqlite3 differently
    import sqlite3  # type: ignore[no-redef]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.log import Logger

    StrPath = str | os.PathLike[str]

SCHEMA_VERSION = 1
APP_ID = 0x45445354  # "EDST": marks the file as ours, so a foreign database is recognised

_SCHEMA = """
CREATE TABLE objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    resource_version TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE kinds (
    kind TEXT PRIMARY KEY,
    resource_version TEXT NOT NULL,
    updated REAL NOT NULL
);
"""

Key = tuple[str, str]  # (namespace, name)


class StoreError(Exception):
    pass


def object_key(obj: KubeObject) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class Store:
    """Thread-safe (one connection behind a lock): informers write, the local API reads."""

    def __init__(self, path: StrPath, log: Logger, cache_kib: int = 128) -> None:
        # os.path rather than pathlib: pathlib stays loaded for the agent's life (~0.15 MiB).
        self.path = os.fspath(path)
        self.log = log
        # Re-entrant: apply() runs inside transaction() on the same thread.
        self._lock = threading.RLock()
        self._batch = False
        self.moved_aside: str | None = None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        try:
            self._db = self._open(cache_kib)
        except (sqlite3.DatabaseError, StoreError) as exc:
            self.moved_aside = self._move_aside(str(exc))
            self._db = self._open(cache_kib)

    # --- opening -------------------------------------------------------------------
    def _open(self, cache_kib: int) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            # Create with 0600 before SQLite does, so no window exposes cached objects.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            db.execute("PRAGMA mmap_size=0")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"cannot enable WAL (journal_mode={mode})")
            db.execute("PRAGMA synchronous=NORMAL")
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if app_id == 0 and version == 0 and not tables:
                db.execute("BEGIN IMMEDIATE")
                _create(db)
                db.execute("COMMIT")
            elif app_id != APP_ID or version != SCHEMA_VERSION:
                raise StoreError(
                    f"foreign schema (application_id={app_id:#x}, user_version={version})"
                )
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"integrity check failed: {check}")
            for suffix in ("-wal", "-shm"):
                side = self.path + suffix
                if os.path.exists(side):
                    os.chmod(side, 0o600)
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, why: str) -> str:
        dest = f"{self.path}.corrupt-{int(time.time())}"
        for suffix in ("", "-wal", "-shm"):
            src = self.path + suffix
            if os.path.exists(src):
                os.replace(src, dest + suffix)
        self.log.error(
            "store %s is unusable (%s): moved aside to %s; rebuilding from the API",
            self.path, why, dest,
        )  # fmt: skip
        return dest

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes (each call is one transaction, or part of one transaction()) --------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several apply() calls (a slice of a list) into one transaction: one commit
        instead of one per object, which is most of a relist's cost. Every event stays
        all-or-nothing; a crash rolls back to the previous commit, an event boundary. The
        store is locked meanwhile, so callers keep network I/O out of it."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            self._batch = True
            try:
                yield
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
            finally:
                self._batch = False

    def apply(
        self, kind: str, event_type: EventType | str, obj: KubeObject, kind_rv: str
    ) -> str | None:
        """Apply one event; returns the stored JSON text (None for a deletion)."""
        ns, name = object_key(obj)
        text = None
        meta = obj.get("metadata") or {}
        with self._lock:
            db = self._db
            own = not self._batch
            if own:
                db.execute("BEGIN IMMEDIATE")
            try:
                if event_type == EventType.DELETED:
                    db.execute(
                        "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                        (kind, ns, name),
                    )
                else:
                    text = json.dumps(obj, separators=(",", ":"))
                    db.execute(
                        "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?)",
                        (kind, ns, name, meta.get("uid") or "", meta.get("resourceVersion") or "",
                         text),
                    )  # fmt: skip
                if kind_rv:
                    _set_rv(db, kind, kind_rv)
                if own:
                    db.execute("COMMIT")
            except BaseException:
                if own:
                    db.execute("ROLLBACK")
                raise
        return text

    def delete_kind(self, kind: str) -> int:
        """Drop every object of `kind` (e.g. Secrets once caching them is turned off)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._db.execute("DELETE FROM objects WHERE kind=?", (kind,)).rowcount
                self._db.execute("DELETE FROM kinds WHERE kind=?", (kind,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n

    def set_resource_version(self, kind: str, rv: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                _set_rv(self._db, kind, rv)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- reads ---------------------------------------------------------------------
    def versions(self, kind: str) -> Versions:
        """(namespace, name) -> resourceVersion: the compact state informers diff against."""
        with self._lock:
            cur = self._db.execute(
                "SELECT namespace, name, resource_version FROM objects WHERE kind=?", (kind,)
            )
            return Versions(((ns, n), rv) for ns, n, rv in cur)

    def resource_version(self, kind: str) -> str:
        with self._lock:
            row = self._db.execute(
                "SELECT resource_version FROM kinds WHERE kind=?", (kind,)
            ).fetchone()
        return row[0] if row else ""

    def kinds(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT kind, resource_version FROM kinds"))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT kind, count(*) FROM objects GROUP BY kind"))

    def get_json(self, kind: str, namespace: str, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT json FROM objects WHERE kind=? AND namespace=? AND name=?",
                (kind, namespace, name),
            ).fetchone()
        return row[0] if row else None

    def iter_json(self, kind: str, namespace: str | None = None, batch: int = 200) -> Iterator[str]:
        """Stored JSON texts in key order, fetched in batches so memory stays flat."""
        for _ns, _name, text in self.iter_rows(kind, namespace, None, batch):
            yield text

    def iter_rows(
        self, kind: str, namespace: str | None = None, start_after: tuple[str, str] | None = None,
        batch: int = 200,
    ) -> Iterator[tuple[str, str, str]]:  # fmt: skip
        """(namespace, name, JSON) in key order after `start_after`, fetched in batches."""
        after: tuple[str, str] = start_after or ("", "")
        first = start_after is None
        while True:
            clause = "" if first else " AND (namespace, name) > (?, ?)"
            args: list[Any] = [kind]
            if namespace is not None:
                clause += " AND namespace=?"
            if not first:
                args += list(after)
            if namespace is not None:
                args.append(namespace)
            with self._lock:
                rows = self._db.execute(
                    "SELECT namespace, name, json FROM objects WHERE kind=?"
                    f"{clause} ORDER BY namespace, name LIMIT {int(batch)}",
                    args,
                ).fetchall()
            if not rows:
                return
            yield from rows
            after, first = (rows[-1][0], rows[-1][1]), False

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(str(self.path) + suffix).st_size
        return total


def _create(db: sqlite3.Connection) -> None:
    for stmt in filter(str.strip, _SCHEMA.split(";")):
        db.execute(stmt)
    db.execute(f"PRAGMA application_id={APP_ID}")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _set_rv(db: sqlite3.Connection, kind: str, rv: str) -> None:
    db.execute("INSERT OR REPLACE INTO kinds VALUES (?,?,?)", (kind, rv, time.time()))


def open_readonly(path: StrPath) -> sqlite3.Connection:
    """For `edgesite-agent dump` while the agent may be running: never writes."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise StoreError(f"no store at {p}")
    return sqlite3.connect(f"file:{p}?mode=ro", uri=True)
