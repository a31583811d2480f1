"""Read-only view of Bytewax 0.21's recovery store: which snapshots are committed.

Bytewax snapshots every stateful step at the end of each epoch and, once every worker's snapshots
for an epoch are durable, advances that worker's frontier. On a restart it resumes from the
smallest frontier of the last execution and restores, for each step, the newest snapshot older
than it. An epoch below that frontier is therefore *committed*: no restart will ever process its
input again. The ClickHouse sink writes rows to ClickHouse only once the epoch that produced them
is committed (see ``stitchboard.sinks.clickhouse_sink``), and uses this module to find out when that is.

The store is SQLite written by Bytewax's own (Rust, bundled) SQLite. A second SQLite library
opening the same files *in the same process* breaks SQLite's locking (POSIX locks are per process,
so neither copy sees the other's; closing one connection drops the other's locks) and corrupts the
store — measured here as SIGBUS and "database disk image is malformed" after restarts. So the
queries run in a small child process (stdlib only), which is an ordinary concurrent reader.

Only Bytewax's tables ``exs``, ``fronts`` and ``snaps`` are read (schema pinned at 0.21.x). A store
that cannot be read raises ``StoreUnreadable``: the caller waits and asks again, which delays writes
but can never write uncommitted rows nor skip committed ones.
"""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The child: one JSON request per line on stdin, one JSON answer per line on stdout; exits at EOF.
_READER = r"""
import base64, json, pickle, sqlite3, sys
from pathlib import Path

def frontier(db):
    latest = db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs ORDER BY ex_num DESC LIMIT 1").fetchone()
    if latest is None:
        return None
    ex_num, workers, resume = latest
    reported, lowest = db.execute(
        "SELECT count(*), min(worker_frontier) FROM fronts WHERE ex_num = ?", (ex_num,)).fetchone()
    return lowest if reported >= workers and lowest is not None else resume

def answer(directory, step_id, state_key, full):
    parts = sorted(Path(directory).glob("part-*.sqlite3"))
    # Read-write mode although only SELECTs run: once Bytewax closed the store, SQLite has removed
    # the WAL index, and a read-only connection could not rebuild it.
    dbs = [sqlite3.connect(p, timeout=5) for p in parts]
    try:
        fronts = [f for f in (frontier(db) for db in dbs) if f is not None]
        if not fronts:
            return None
        committed, best = min(fronts), None
        for db in dbs:
            row = db.execute(
                "SELECT snap_epoch, ser_change FROM snaps WHERE step_id = ? AND state_key = ?"
                " AND snap_epoch < ? ORDER BY snap_epoch DESC LIMIT 1", (step_id, state_key, committed)).fetchone()
            if row is not None and (best is None or row[0] > best[0]):
                best = row
        if best is None or best[1] is None:
            return None
        if full:
            return {"epoch": best[0], "state": base64.b64encode(best[1]).decode("ascii")}
        head = pickle.loads(best[1])
        if isinstance(head, tuple) and len(head) == 4 and head[0] == "stitchboard-state":
            head = head[3]  # a versioned snapshot (stitchboard.state_version): its payload
        return {"epoch": best[0], "head": list(head[:2]) if isinstance(head, tuple) else None}
    finally:
        for db in dbs:
            db.close()

for line in sys.stdin:
    request = json.loads(line)
    try:
        result = {"snapshot": answer(request["dir"], request["step_id"], request["state_key"], request["full"])}
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
"""


class StoreUnreadable(RuntimeError):
    """The store could not be read just now (locked, being created, reader gone): ask again later."""


@dataclass(frozen=True, slots=True)
class CommittedSnapshot:
    """The newest committed snapshot of one step's state key.

    ``head`` is the first two items of a tuple state (cheap to ask for often); ``state`` is the
    whole state, present only when asked for.
    """

    epoch: int
    head: tuple[Any, ...] | None = None
    state: Any = None


class RecoveryStore:
    """The partitions (``part-*.sqlite3``) of one Bytewax recovery directory, read from a child."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None

    def _ask(self, request: dict[str, Any]) -> Any:
        with self._lock:
            if self._child is None or self._child.poll() is not None:
                self._child = subprocess.Popen(
                    [sys.executable, "-I", "-c", _READER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            assert self._child.stdin is not None and self._child.stdout is not None
            try:
                self._child.stdin.write(json.dumps(request) + "\n")
                self._child.stdin.flush()
                reply = json.loads(self._child.stdout.readline() or '{"error": "the reader exited"}')
            except OSError as exc:
                raise StoreUnreadable(f"recovery store reader: {exc}") from exc
        if "error" in reply:
            raise StoreUnreadable(f"recovery store {self._directory}: {reply['error']}")
        return reply["snapshot"]

    def committed_snapshot(
        self, step_id: str, state_key: str, *, full: bool = False
    ) -> CommittedSnapshot | None:
        """The snapshot Bytewax would restore for ``(step_id, state_key)`` if the flow restarted now;
        ``None`` when there is none. Raises ``StoreUnreadable`` when the store cannot be read now.
        """
        answer = self._ask(
            {"dir": str(self._directory), "step_id": step_id, "state_key": state_key, "full": full}
        )
        if answer is None:
            return None
        if full:
            return CommittedSnapshot(answer["epoch"], state=pickle.loads(base64.b64decode(answer["state"])))
        head = answer["head"]
        return CommittedSnapshot(answer["epoch"], head=tuple(head) if head is not None else None)

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                if self._child.stdin is not None:
                    self._child.stdin.close()
                self._child.wait(timeout=10)
                self._child = None
