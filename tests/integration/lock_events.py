"""Lock tests on events, not clocks: a module run in the background, a concurrent reader, and a
sampler of the server's own view (pg_locks / information_schema.PROCESSLIST).

Every lock a test holds is released on something the test saw happen (the module seen waiting in
the lock queue, seen watching its blockers, a number of reader queries completed, the module
returned), never after a sleep; every wait for an event also ends when the module has returned, so
a broken module fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import threading
import time

READER_APP = "dbops-test/reader"
MODULE_APP_LIKE = "dbops.maintenance/%"
WATCH_APP = "dbops.maintenance/blocker-watch"
# A safety net against a hang only (a broken module that never leaves the lock queue): every wait
# below ends on an event first. scripts/mutation-check.sh may lower it to fail faster.
EVENT_LIMIT_S = float(os.environ.get("DBOPS_LOCK_TEST_EVENT_LIMIT", "180"))


class ModuleRun(threading.Thread):
    """ansible.run(module, args) in a thread; .result once .done is set."""

    def __init__(self, ansible, module, args, **kw):
        super().__init__(daemon=True)
        self.ansible, self.module, self.args, self.kw = ansible, module, args, kw
        self.result = None
        self.error = None
        self.done = threading.Event()
        self.started_at = self.ended_at = None

    def run(self):
        self.started_at = time.monotonic()
        try:
            self.result = self.ansible.run(self.module, self.args, **self.kw)
        except Exception as e:  # pylint: disable=broad-except
            self.error = e
        finally:
            self.ended_at = time.monotonic()
            self.done.set()

    def start_and_wait(self):
        self.start()
        return self.wait()

    def wait(self):
        """The module's result; a module still running after the safety net fails the test (the
        caller's finally then releases the locks it holds)."""
        self.done.wait(EVENT_LIMIT_S)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the module run did not finish"
        return self.result


def wait_for(predicate, run=None, what="event"):
    """Poll predicate() until it is true; False if the module run ended first (then the caller's
    assertion says what did not happen)."""
    deadline = time.monotonic() + EVENT_LIMIT_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        if run is not None and run.done.is_set():
            return bool(predicate())
        time.sleep(0.02)
    raise AssertionError("gave up waiting for %s (safety net)" % what)


class Reader(threading.Thread):
    """The application: one small query on the table at a time, each query's (start, end) kept."""

    def __init__(self, db, sql):
        super().__init__(daemon=True)
        self.db, self.sql = db, sql
        self.queries = []  # (start, end) monotonic
        self.stop = threading.Event()
        self.session_id = None
        self.ready = threading.Event()

    def run(self):
        conn = self.db.connect()
        try:
            cur = conn.cursor()
            if self.db.engine == "postgresql":
                cur.execute("SELECT set_config('application_name', %s, false)", [READER_APP])
            cur.execute("SELECT pg_backend_pid()" if self.db.engine == "postgresql" else "SELECT CONNECTION_ID()")
            self.session_id = cur.fetchone()[0]
            self.ready.set()
            while not self.stop.is_set():
                t0 = time.monotonic()
                cur.execute(self.sql)
                cur.fetchall()
                self.queries.append((t0, time.monotonic()))
                self.stop.wait(0.01)
        finally:
            self.ready.set()
            conn.close()

    def completed(self):
        return len(self.queries)

    def completed_between(self, t0, t1):
        return sum(1 for s, e in self.queries if s >= t0 and e <= t1)

    def finish(self):
        self.stop.set()
        self.join(60)
        return self.queries


class ServerView(threading.Thread):
    """Samples, from a connection of its own, who waits for a lock in the test's database:
    the module's sessions, the reader, and whether the module's monitoring connection is open.

    samples: list of (t, module_waiting, reader_waiting, watcher_connected).
    """

    def __init__(self, db, reader=None, others=()):
        super().__init__(daemon=True)
        self.db, self.reader = db, reader
        self.others = set(others)  # MariaDB: connection ids of the test's own sessions
        self.samples = []
        self.stop = threading.Event()
        self.first = threading.Event()

    def add_other(self, ident):
        self.others.add(ident)

    def sample(self, cur):
        reader = self.reader.session_id if self.reader is not None else None
        if self.db.engine == "postgresql":
            cur.execute(
                "SELECT a.application_name, a.pid, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) "
                "FROM pg_stat_activity a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()")
            rows = cur.fetchall()
            module = any(w for app, _pid, w in rows if app.startswith("dbops.maintenance/") and app != WATCH_APP)
            reading = any(w for _app, pid, w in rows if pid == reader)
            watcher = any(app == WATCH_APP for app, _pid, _w in rows)
            return module, reading, watcher
        cur.execute("SELECT ID, COALESCE(STATE, '') FROM information_schema.PROCESSLIST "
                    "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()")
        rows = cur.fetchall()
        ours = self.others | {reader}
        waiting = [i for i, st in rows if st.startswith("Waiting for table metadata lock")]
        module = any(i not in ours for i in waiting)
        reading = reader in waiting
        module_conns = [i for i, _st in rows if i not in ours]
        return module, reading, len(module_conns) >= 2

    def run(self):
        conn = self.db.connect()
        try:
            cur = conn.cursor()
            while not self.stop.is_set():
                s = self.sample(cur)
                self.samples.append((time.monotonic(),) + tuple(s))
                self.first.set()
                self.stop.wait(0.01)
        finally:
            self.first.set()
            conn.close()

    # --- views of the samples -------------------------------------------------------------
    def module_waiting(self):
        return bool(self.samples) and self.samples[-1][1]

    def module_watching(self):
        """Seen waiting before, not waiting now, monitoring connection open: the module timed out
        and is watching its blockers (or pausing)."""
        return self.queueings() >= 1 and bool(self.samples) and not self.samples[-1][1] and self.samples[-1][3]

    def queueings(self, t0=None, t1=None):
        """Episodes of the module waiting in the lock queue (server's view), optionally only those
        that began within [t0, t1]."""
        n, prev = 0, False
        for t, module, _r, _w in self.samples:
            if module and not prev and (t0 is None or t >= t0) and (t1 is None or t <= t1):
                n += 1
            prev = module
        return n

    def episodes(self):
        """(start, end) of each episode of the module waiting, for assertion messages."""
        out, start, last = [], None, None
        for t, module, _r, _w in self.samples:
            if module:
                start = t if start is None else start
                last = t
            elif start is not None:
                out.append((round(start, 3), round(last, 3)))
                start = None
        if start is not None:
            out.append((round(start, 3), round(last, 3)))
        return out

    def reader_waits(self, t0, t1):
        return sum(1 for t, _m, r, _w in self.samples if t0 <= t <= t1 and r)

    def module_waits(self, t0, t1):
        return sum(1 for t, m, _r, _w in self.samples if t0 <= t <= t1 and m)

    def count(self, t0, t1):
        return sum(1 for t, *_rest in self.samples if t0 <= t <= t1)

    def finish(self):
        self.stop.set()
        self.join(60)


def hold_transaction(db, statements):
    """A connection with an open transaction that ran `statements` (it holds their locks until
    .commit()/.rollback()); returns (connection, its pid / connection id)."""
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    if db.engine == "mysql":
        cur.execute("BEGIN")
    for s in statements:
        cur.execute(s)
        if cur.description:
            cur.fetchall()
    if db.engine == "postgresql":
        ident = conn.info.backend_pid
    else:
        cur.execute("SELECT CONNECTION_ID()")
        ident = cur.fetchone()[0]
    return conn, ident


def watch_window(view, reader, run, queries=60):
    """Keep everything as it is while the reader completes `queries` more queries (an event count,
    not a time: a loaded machine makes the window longer, never shorter), unless the module
    returned first. Returns (t0, t1) of the window."""
    t0 = time.monotonic()
    start = reader.completed()
    wait_for(lambda: reader.completed() >= start + queries and view.count(t0, time.monotonic()) >= queries // 2,
             run, "reader queries during the watch")
    return t0, time.monotonic()
