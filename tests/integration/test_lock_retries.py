"""The lock-retry loop (engines/base.py with_lock_retries), through Ansible on the real servers.

After a lock timeout the module must not queue again while its blockers are still there: it
watches them and re-queues when they are gone, so a concurrent reader stalls behind it once per
distinct blocker, not once per retry. Every lock here is held and released on events (see
lock_events.py); timing numbers are the benchmark's business (bench/run_ddl_bench.py (b)).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time

import pytest

from lock_events import ModuleRun, Reader, ServerView, hold_transaction, wait_for, watch_window

COLUMN = "dbops.maintenance.column_ensure"


def column_count(db, column):
    if db.engine == "postgresql":
        return db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                        "AND column_name = %s AND table_schema = current_schema()", [column])[0][0]
    return db.query("SELECT count(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = 'orders' AND COLUMN_NAME = %s", [column])[0][0]


def make_orders(db):
    if db.engine == "postgresql":
        db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
        db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) g")
    else:
        db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int) ENGINE=InnoDB")
        db.execute("INSERT INTO orders SELECT seq, seq FROM seq_1_to_1000")


def column_type(db):
    return "text" if db.engine == "postgresql" else "varchar(20)"


class Scene:
    """A reader on the table, the server's view, and the module in the background."""

    def __init__(self, ansible, db, **module_args):
        self.db = db
        self.reader = Reader(db, "SELECT total FROM orders WHERE id = 7")
        self.reader.start()
        self.reader.ready.wait(30)
        self.view = ServerView(db, self.reader)
        self.holders = []
        self.args = dict(db.params, table="orders", column="note", type=column_type(db), **module_args)
        self.ansible = ansible
        self.run = None

    def hold(self, statements):
        conn, ident = hold_transaction(self.db, statements)
        self.view.add_other(ident)
        self.holders.append(conn)
        return conn, ident

    def start(self, env=None):
        self.view.start()
        self.view.first.wait(30)
        self.run = ModuleRun(self.ansible, COLUMN, self.args, env=env)
        self.run.start()

    def wait_queueing(self, n):
        """The module seen waiting in the lock queue for the n-th time."""
        return wait_for(lambda: self.view.queueings() >= n and self.view.module_waiting(), self.run,
                        "queueing %d of the module" % n)

    def wait_watching(self):
        return wait_for(self.view.module_watching, self.run, "the module watching its blockers")

    def close(self):
        for c in self.holders:
            try:
                c.rollback()
                c.close()
            except Exception:  # pylint: disable=broad-except
                pass
        if self.run is not None:
            self.run.done.wait(300)
        self.view.finish()
        self.reader.finish()


def blocker_sql(db, tag):
    return "SELECT count(*) FROM orders /* %s */" % tag


def test_blocker_released_on_event_one_queueing_and_reader_not_blocked_while_watching(ansible, db):
    make_orders(db)
    s = Scene(ansible, db, lock_timeout=0.5, lock_retries=5, lock_wait_total=300)
    try:
        _conn, pid = s.hold([blocker_sql(db, "report job")])
        s.start()
        assert s.wait_queueing(1), "the module never queued behind the blocker: %s" % s.run.result
        assert s.wait_watching(), "the module did not time out and watch: %s" % s.run.result
        w0, w1 = watch_window(s.view, s.reader, s.run)
        assert not s.run.done.is_set(), "the module returned while the blocker was held: %s" % s.run.result
        s.holders[0].commit()
        t_release = time.monotonic()
        r = s.run.wait()
    finally:
        s.close()
    assert r["changed"] is True, r
    # The module's view: one lock timeout, then it waited for the blocker instead of re-queueing.
    assert len(r["attempts"]) == 1, r["attempts"]
    assert r["attempts"][0]["requeued"] == "blockers gone", r["attempts"]
    b = r["attempts"][0]["blockers"]
    assert [x["pid"] for x in b] == [pid], b
    assert "report job" in b[0]["query"] if db.engine == "postgresql" else b[0]["query"] == "(idle)", b
    # The server's view: while the module watched, it was never in the lock queue, and the reader
    # kept completing queries, none of them waiting for a lock.
    assert s.view.module_waits(w0, w1) == 0
    assert s.view.reader_waits(w0, w1) == 0
    assert s.reader.completed_between(w0, w1) > 0
    # One queueing while the blocker was held (the second attempt gets its lock at once).
    assert s.view.queueings(None, t_release) == 1, (s.view.episodes(), t_release, r["attempts"])
    # So the reader stalled behind that one queueing only, not for the blocker's whole hold (the
    # window lies inside the hold; the stall figures are in the benchmark, not in a timed test).
    assert column_count(db, "note") == 1


def test_blocker_replaced_by_another_one_queueing_per_blocker(ansible, db):
    make_orders(db)
    s = Scene(ansible, db, lock_timeout=0.5, lock_retries=5, lock_wait_total=300)
    try:
        a, pid_a = s.hold([blocker_sql(db, "job A")])
        s.start()
        assert s.wait_queueing(1) and s.wait_watching(), s.run.result
        # B takes the table while the module watches A (the module is not queued, so B gets it at once).
        _b, pid_b = s.hold([blocker_sql(db, "job B")])
        watch_window(s.view, s.reader, s.run, queries=20)
        a.commit()
        assert s.wait_queueing(2), "the module did not queue again after A ended: %s" % s.run.result
        assert s.wait_watching(), s.run.result
        w0, w1 = watch_window(s.view, s.reader, s.run)
        assert not s.run.done.is_set(), s.run.result
        s.holders[1].commit()
        t_release = time.monotonic()
        r = s.run.wait()
    finally:
        s.close()
    assert r["changed"] is True, r
    assert [[x["pid"] for x in at["blockers"]] for at in r["attempts"]] == [[pid_a], [pid_b]], r["attempts"]
    assert all(at["requeued"] == "blockers gone" for at in r["attempts"]), r["attempts"]
    assert s.view.queueings(None, t_release) == 2, (s.view.episodes(), t_release, r["attempts"])  # one per blocker
    assert s.view.module_waits(w0, w1) == 0 and s.view.reader_waits(w0, w1) == 0
    assert column_count(db, "note") == 1


def test_never_released_within_lock_wait_total_fails_names_blocker_changes_nothing(ansible, db):
    make_orders(db)
    s = Scene(ansible, db, lock_timeout=0.5, lock_retries=50, lock_wait_total=2)
    try:
        _a, pid = s.hold([blocker_sql(db, "nightly export")])
        s.start()
        r = s.run.wait()  # held until the module returned
    finally:
        s.close()
    assert r["failed"], r
    assert "lock_wait_total=2" in r["msg"] and "Nothing was changed" in r["msg"], r["msg"]
    assert "pid %d" % pid in r["msg"] and "held the lock for" in r["msg"], r["msg"]
    if db.engine == "postgresql":  # MariaDB without performance_schema: an idle blocker's last query is unknown
        assert "nightly export" in r["msg"], r["msg"]
    assert len(r["attempts"]) == 1  # it watched the one blocker, it did not re-queue 50 times
    assert column_count(db, "note") == 0


def test_retries_used_up_names_every_blocker_seen(ansible, db):
    make_orders(db)
    s = Scene(ansible, db, lock_timeout=0.5, lock_retries=1, lock_wait_total=300)
    try:
        a, pid_a = s.hold([blocker_sql(db, "job A")])
        s.start()
        assert s.wait_queueing(1) and s.wait_watching(), s.run.result
        _b, pid_b = s.hold([blocker_sql(db, "job B")])
        a.commit()
        r = s.run.wait()  # B is held until the module returned
    finally:
        s.close()
    assert r["failed"], r
    assert "lock_retries=1" in r["msg"] and "tried 2 time(s)" in r["msg"], r["msg"]
    assert "pid %d" % pid_a in r["msg"] and "pid %d" % pid_b in r["msg"], r["msg"]
    if db.engine == "postgresql":
        assert "job A" in r["msg"] and "job B" in r["msg"]
    assert {b["pid"] for b in r["blockers"]} == {pid_a, pid_b}
    assert column_count(db, "note") == 0


def test_pg_blocker_secret_is_redacted_but_blocker_named(ansible, pg_db):
    db = pg_db
    make_orders(db)
    role = "dbops_t_role_%s" % secrets.token_hex(4)
    secret = "TopSecret-%s" % secrets.token_hex(8)
    db.execute('CREATE ROLE "%s"' % role)
    s = Scene(ansible, db, lock_timeout=0.3, lock_retries=0)
    try:
        # The blocker read the table, then ran a statement with a password: its last query.
        _a, pid = s.hold(["SELECT count(*) FROM orders", "ALTER ROLE \"%s\" PASSWORD '%s'" % (role, secret)])
        s.start()
        r = s.run.wait()
    finally:
        s.close()
        db.execute('DROP ROLE IF EXISTS "%s"' % role)
    assert r["failed"] and "pid %d" % pid in r["msg"], r
    assert "ALTER ROLE" in r["msg"] and "PASSWORD $1" in r["msg"], r["msg"]
    out = json.dumps(dict(r)) + r.stdout + r.stderr
    assert secret not in out and "TopSecret" not in out


def test_mariadb_running_blocker_secret_is_redacted_but_blocker_named(ansible, mysql_db):
    db = mysql_db
    make_orders(db)
    secret = "TopSecret-%s" % secrets.token_hex(8)
    s = Scene(ansible, db, lock_timeout=0.5, lock_retries=0)
    runner = db.connect()
    killer = db.connect()
    try:
        cur = runner.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        rid = cur.fetchone()[0]
        s.view.add_other(rid)
        kcur = killer.cursor()
        kcur.execute("SELECT CONNECTION_ID()")
        s.view.add_other(kcur.fetchone()[0])
        # A running statement with a secret literal holds the table's metadata lock until it is killed.
        t = threading.Thread(target=lambda: _run_quietly(
            cur, "SELECT COUNT(*) FROM orders WHERE total <> 0 AND '%s' <> '' AND SLEEP(600) = 0" % secret), daemon=True)
        t.start()
        wait_for(lambda: _is_running(kcur, rid), None, "the blocker running")
        s.start()
        r = s.run.wait()
        kcur.execute("KILL QUERY %d" % rid)
        t.join(60)
    finally:
        s.close()
        runner.close()
        killer.close()
    assert r["failed"] and "pid %d" % rid in r["msg"], r
    assert "SLEEP(?)" in r["msg"], r["msg"]
    out = json.dumps(dict(r)) + r.stdout + r.stderr
    assert secret not in out and "TopSecret" not in out


def _run_quietly(cur, sql):
    try:
        cur.execute(sql)
        cur.fetchall()
    except Exception:  # pylint: disable=broad-except  # KILL QUERY ends it
        pass


def _is_running(cur, ident):
    cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE '%%SLEEP%%'", [ident])
    return cur.fetchone()[0] == 1


# --- MariaDB with performance_schema on: the metadata-lock holders are known exactly -------------

@pytest.fixture(scope="module")
def mariadb_ps(tmp_path_factory):
    """An extra MariaDB of this module only, started like the harness's but with performance_schema
    and its metadata-lock instrument on (the shared MariaDB has it off, MariaDB's default)."""
    from harness import servers as harness  # pylint: disable=import-outside-toplevel
    from conftest import Server  # pylint: disable=import-outside-toplevel
    state = tmp_path_factory.mktemp("mariadb-ps")
    os.chmod(state, 0o755)
    wrapper = state / "mariadbd-ps"
    wrapper.write_text('#!/bin/sh\nexec %s "$@" --performance-schema=ON '
                       '--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON '
                       '--performance-schema-consumer-events-statements-current=ON\n' % harness.MARIADBD)
    wrapper.chmod(0o755)
    real = harness.MARIADBD
    server = harness.MariaDBServer("mariadb_ps", str(state))
    harness.MARIADBD = str(wrapper)
    try:
        info = server.start(harness._free_ports(1)[0], secrets.token_urlsafe(24), 180)  # pylint: disable=protected-access
    finally:
        harness.MARIADBD = real
    try:
        srv = Server("mariadb_ps", info)
        assert srv.query(None, "SELECT @@performance_schema") == [(1,)]
        yield srv
    finally:
        server.stop(info)


@pytest.fixture
def ps_db(mariadb_ps):  # pylint: disable=redefined-outer-name
    from conftest import DB  # pylint: disable=import-outside-toplevel
    name = mariadb_ps.create_database()
    yield DB(mariadb_ps, name)
    mariadb_ps.drop_database(name)


def test_mariadb_performance_schema_blocker_watched_and_named(ansible, ps_db):
    """With metadata_locks the blocker is the exact holder, its last statement is known (and
    redacted), and the module waits for it without re-queueing."""
    db = ps_db
    make_orders(db)
    secret = "TopSecret-%s" % secrets.token_hex(8)
    s = Scene(ansible, db, lock_timeout=1, lock_retries=5, lock_wait_total=300)
    try:
        conn, pid = s.hold(["SELECT count(*) FROM orders WHERE total <> 0 /* report job */"])
        cur = conn.cursor()
        cur.execute("SELECT '%s' AS last_query" % secret)  # its last statement, still in its transaction
        cur.fetchall()
        s.start()
        assert s.wait_queueing(1) and s.wait_watching(), s.run.result
        w0, w1 = watch_window(s.view, s.reader, s.run)
        assert not s.run.done.is_set(), s.run.result
        s.holders[0].commit()
        r = s.run.wait()
    finally:
        s.close()
    assert r["changed"] is True, r
    assert len(r["attempts"]) == 1 and r["attempts"][0]["requeued"] == "blockers gone", r["attempts"]
    b = r["attempts"][0]["blockers"]
    assert [x["pid"] for x in b] == [pid] and b[0]["seen_by"] == "metadata_locks", b
    assert "AS last_query" in b[0]["query"], b
    out = json.dumps(dict(r)) + r.stdout + r.stderr
    assert secret not in out and "TopSecret" not in out
    assert s.view.module_waits(w0, w1) == 0 and s.view.reader_waits(w0, w1) == 0
    assert column_count(db, "note") == 1


def test_mariadb_performance_schema_never_released_names_blocker(ansible, ps_db):
    db = ps_db
    make_orders(db)
    s = Scene(ansible, db, lock_timeout=1, lock_retries=50, lock_wait_total=3)
    try:
        _a, pid = s.hold(["SELECT count(*) FROM orders /* nightly export */"])
        s.start()
        r = s.run.wait()
    finally:
        s.close()
    assert r["failed"] and "lock_wait_total=3" in r["msg"] and "pid %d" % pid in r["msg"], r
    assert len(r["attempts"]) == 1 and r["attempts"][0]["blockers"][0]["seen_by"] == "metadata_locks"
    assert column_count(db, "note") == 0


# --- blockers found after the timeout -------------------------------------------------------------------
# On a loaded machine a short lock wait can end before the watch's first look reaches the server. The
# blocker still holds its lock then, so the module finds it afterwards: PostgreSQL from pg_locks (who holds
# a lock that conflicts with what the statement asks for), MariaDB without performance_schema from
# INNODB_TRX. DBOPS_BLOCKER_WATCH_OFF=1 keeps the watch from looking during the wait, so that path is taken
# every time, whatever the machine's load.
WATCH_OFF = {"DBOPS_BLOCKER_WATCH_OFF": "1"}


def test_blocker_found_after_the_timeout_named_and_watched_not_requeued(ansible, db):
    """Held until the module returned. With the blocker known, the module watches it instead of re-queueing,
    so it tries once and gives up at lock_wait_total; unknown, it would have paused and queued again."""
    make_orders(db)
    db.execute("CREATE TABLE other (id int)")
    s = Scene(ansible, db, lock_timeout=0.3, lock_retries=50, lock_wait_total=2)
    try:
        _c, pid = s.hold([blocker_sql(db, "report job")])
        if db.engine == "postgresql":  # a transaction that holds a lock on another table only: not a blocker
            _o, other_pid = s.hold(["SELECT count(*) FROM other"])
        s.start(env=WATCH_OFF)  # the reader's queries keep queueing behind the module: they are not blockers
        r = s.run.wait()
    finally:
        s.close()
    assert r["failed"] and "lock_wait_total=2" in r["msg"] and "pid %d" % pid in r["msg"], r
    assert len(r["attempts"]) == 1 and r["attempts"][0]["requeued"] == "lock_wait_total", r["attempts"]
    b = r["attempts"][0]["blockers"]
    assert [x["pid"] for x in b] == [pid], b
    # MariaDB: INNODB_TRX, or SHOW ENGINE INNODB STATUS when another session kept that cache stale (the other
    # test worker's blocker watch on the same server can)
    assert b[0]["seen_by"] in (("pg_locks",) if db.engine == "postgresql" else ("innodb_trx", "innodb_status")), b
    if db.engine == "postgresql":
        assert other_pid not in [x["pid"] for x in b] and "report job" in b[0]["query"], b
    assert column_count(db, "note") == 0


def test_pg_session_queued_behind_the_module_is_not_named_a_blocker(ansible, pg_db):
    """A transaction that began while the module waited queued behind it, and got its lock when the module
    left the queue: it holds a conflicting lock when the module looks after the timeout, but it did not block
    the module, so it is not named (only transactions older than the module's statement are)."""
    db = pg_db
    make_orders(db)
    # a 2 s wait: wide enough for the late reader to be started inside it on a loaded machine
    s = Scene(ansible, db, lock_timeout=2, lock_retries=50, lock_wait_total=4)
    late = db.connect(autocommit=False)
    late_pid = late.info.backend_pid  # no query yet: its transaction begins with the SELECT below
    got_lock = threading.Event()

    def late_reader():
        late.execute("SELECT count(*) FROM orders /* late reader */").fetchall()
        got_lock.set()  # then it stays idle in its transaction, holding ACCESS SHARE
    try:
        _c, pid = s.hold([blocker_sql(db, "report job")])
        s.start(env=WATCH_OFF)
        assert s.wait_queueing(1), s.run.result
        t = threading.Thread(target=late_reader, daemon=True)
        t.start()
        r = s.run.wait()
    finally:
        s.close()
        got_lock.wait(60)
        late.rollback()
        late.close()
    assert got_lock.is_set(), "the late reader never got its lock"
    assert r["failed"] and "pid %d" % pid in r["msg"], r
    assert len(r["attempts"]) == 1 and [x["pid"] for x in r["attempts"][0]["blockers"]] == [pid], (late_pid, r["attempts"])
    assert "pid %d" % late_pid not in r["msg"] and [x["pid"] for x in r["blockers"]] == [pid], r["msg"]


def test_pg_enum_blocker_found_after_the_timeout_by_its_type_lock(ansible, pg_db):
    db = pg_db
    db.execute("CREATE TYPE mood AS ENUM ('ok')")
    db.execute("CREATE TABLE people (m mood)")
    blocker, pid = hold_transaction(db, ["ALTER TYPE mood ADD VALUE 'meh'"])
    reader, reader_pid = hold_transaction(db, ["SELECT count(*) FROM people"])  # uses the type, locks no type
    try:
        r = ModuleRun(ansible, "dbops.maintenance.enum_add",
                      dict(db.params, name="mood", values=["sad"], lock_timeout=0.3, lock_retries=0),
                      env=WATCH_OFF).start_and_wait()
    finally:
        for c in (blocker, reader):
            c.rollback()
            c.close()
    assert r["failed"] and "lock_timeout=0.3" in r["msg"] and "pid %d" % pid in r["msg"], r
    b = r["attempts"][0]["blockers"]
    assert [(x["pid"], x["seen_by"]) for x in b] == [(pid, "pg_locks")] and reader_pid != pid, b
    assert [x[0] for x in db.query("SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                   "WHERE t.typname = 'mood'")] == ["ok"]


class CacheKeeper(threading.Thread):
    """Reads information_schema.INNODB_TRX every few milliseconds, as a busy monitoring agent (or another
    module's watch on the same server) does: InnoDB then never refreshes that cache (it refreshes it only when
    nobody read it for 0.1 s), and a transaction begun after the last refresh is missing from it."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db, self.stop, self.reads = db, threading.Event(), 0
        self.started_reading = threading.Event()

    def run(self):
        conn = self.db.connect()
        try:
            cur = conn.cursor()
            while not self.stop.is_set():
                cur.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
                cur.fetchall()
                self.reads += 1
                if self.reads >= 20:
                    self.started_reading.set()
                self.stop.wait(0.02)
        finally:
            self.started_reading.set()
            conn.close()


def test_mariadb_blocker_found_while_another_session_keeps_innodb_trx_stale(ansible, mysql_db):
    db = mysql_db
    make_orders(db)
    keeper = CacheKeeper(db)
    keeper.start()
    keeper.started_reading.wait(60)
    s = Scene(ansible, db, lock_timeout=1, lock_retries=0)
    try:
        # The blocker's transaction begins after the cache's last refresh. A keeper that the machine's load held
        # back for over 0.1 s lets a read refresh it: then the blocker is released and taken again (an event,
        # the test's own read, decides; no timing).
        check = db.connect()
        stale = False
        for _attempt in range(10):
            c, pid = s.hold([blocker_sql(db, "report job")])
            cur = check.cursor()
            cur.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
            stale = pid not in [r[0] for r in cur.fetchall()]
            if stale:
                break
            s.holders.remove(c)
            c.rollback()
            c.close()
        check.close()
        s.start(env=WATCH_OFF)
        r = s.run.wait()
    finally:
        keeper.stop.set()
        s.close()
        keeper.join(30)
    assert stale, "the cache was refreshed after all: this test did not keep it stale"
    assert r["failed"] and "pid %d" % pid in r["msg"], r
    b = r["attempts"][0]["blockers"]
    assert [(x["pid"], x["seen_by"]) for x in b] == [(pid, "innodb_status")], b
    assert column_count(db, "note") == 0
