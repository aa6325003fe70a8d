"""Production safety of the connection layer, through Ansible on real servers:
lock timeouts with retries, the maintenance lock, and secrets kept out of every output."""

from __future__ import annotations

import fcntl
import threading
import time

import pytest

COLUMN = "dbops.maintenance.column_ensure"
ENUM = "dbops.maintenance.enum_add"
LOCK_CLASS = 0x64626F70


class Traffic(threading.Thread):
    """The application: small queries on a table in a loop, recording the longest stall."""

    def __init__(self, db, sql):
        super().__init__(daemon=True)
        self.db, self.sql = db, sql
        self.latencies = []
        self.stop = threading.Event()

    def run(self):
        conn = self.db.connect()
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                cur = conn.cursor()
                cur.execute(self.sql)
                cur.fetchall()
                cur.close()
                self.latencies.append(time.monotonic() - t0)
                time.sleep(0.02)
        finally:
            conn.close()

    def finish(self):
        self.stop.set()
        self.join(30)
        return max(self.latencies)


def hold_lock_in_background(db, statements, seconds, after_waiter=False):
    """Open a transaction that runs `statements`, keep it open, then commit.

    after_waiter=False: commit `seconds` after now. True: commit `seconds` after
    another session is first seen waiting for a lock (so a slow ansible-playbook
    start cannot make the test pass without the DDL ever waiting).
    Returns (connection, thread); join the thread before closing the connection.
    """
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    for s in statements:
        cur.execute(s)
        if cur.description:
            cur.fetchall()
    if db.engine == "postgresql":
        waiting_sql = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
    else:
        waiting_sql = ("SELECT count(*) FROM information_schema.PROCESSLIST "
                       "WHERE STATE LIKE 'Waiting for table metadata lock%%'")
    cancel = threading.Event()

    def release():
        if after_waiter:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not cancel.is_set():
                if db.query(waiting_sql)[0][0]:
                    break
                time.sleep(0.05)
        if not cancel.wait(seconds):
            conn.commit()

    thread = threading.Thread(target=release, daemon=True)
    thread.cancel = cancel.set
    thread.start()
    return conn, thread


def pg_pid(conn):
    return conn.info.backend_pid


@pytest.fixture
def pg_orders(pg_db):
    pg_db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
    pg_db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) g")
    return pg_db


def test_pg_lock_timeout_retries_and_does_not_stall_traffic(ansible, pg_orders):
    db = pg_orders
    traffic = Traffic(db, "SELECT total FROM orders WHERE id = 7")
    traffic.start()
    time.sleep(0.3)
    # A long transaction that read the table: ALTER TABLE must wait for it.
    blocker, timer = hold_lock_in_background(db, ["SELECT count(*) FROM orders /* report job */"], 3.5,
                                             after_waiter=True)
    try:
        t0 = time.monotonic()
        r = ansible.run(COLUMN, dict(db.params, table="orders", column="note", type="text",
                                     lock_timeout=1, lock_retries=8))
        took = time.monotonic() - t0
    finally:
        timer.join()
        blocker.close()
        stall = traffic.finish()
    assert r["changed"] is True, r
    assert took >= 3.5, "the DDL cannot have run before the blocker committed"
    assert len(r["attempts"]) >= 2
    assert all(a["blockers"] for a in r["attempts"]), r["attempts"]
    assert "report job" in r["attempts"][-1]["blockers"][0]["query"]
    # Traffic queued behind the waiting ALTER at most for one lock_timeout (1 s), never for the 4 s.
    assert stall < 1.0 + 0.6, "traffic stalled %.2fs" % stall
    assert db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                    "AND column_name = 'note'") == [(1,)]


def test_pg_retries_exhausted_names_blocker_and_changes_nothing(ansible, pg_orders):
    db = pg_orders
    blocker, timer = hold_lock_in_background(db, ["SELECT count(*) FROM orders /* nightly export */"], 6)
    try:
        pid = pg_pid(blocker)
        r = ansible.run(COLUMN, dict(db.params, table="orders", column="note", type="text",
                                     lock_timeout=0.3, lock_retries=1))
    finally:
        timer.cancel()
        blocker.rollback()
        blocker.close()
    assert r["failed"], r
    assert "Nothing was changed" in r["msg"]
    assert "pid %d" % pid in r["msg"] and "nightly export" in r["msg"]
    assert len(r["attempts"]) == 2
    assert db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                    "AND column_name = 'note'") == [(0,)]


def test_pg_enum_add_respects_lock_timeout(ansible, pg_db):
    pg_db.execute("CREATE TYPE mood AS ENUM ('ok')")
    pg_db.execute("CREATE TABLE people (m mood)")
    # An open transaction that altered the type holds its lock.
    blocker, timer = hold_lock_in_background(pg_db, ["ALTER TYPE mood ADD VALUE 'meh'"], 5)
    try:
        r = ansible.run(ENUM, dict(pg_db.params, name="mood", values=["sad"], lock_timeout=0.3, lock_retries=0))
    finally:
        timer.cancel()
        blocker.rollback()
        blocker.close()
    assert r["failed"] and "lock_timeout=0.3" in r["msg"], r
    assert [x[0] for x in pg_db.query("SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                      "WHERE t.typname = 'mood'")] == ["ok"]


def test_mariadb_lock_wait_timeout_then_retry_succeeds(ansible, mysql_db):
    db = mysql_db
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
    db.execute("INSERT INTO orders VALUES (1, 1)")
    # An open transaction that read the table holds a metadata lock.
    blocker, timer = hold_lock_in_background(db, ["BEGIN", "SELECT * FROM orders"], 2.5, after_waiter=True)
    try:
        r = ansible.run(COLUMN, dict(db.params, table="orders", column="note", type="varchar(20)",
                                     lock_timeout=1, lock_retries=6))
    finally:
        timer.join()
        blocker.close()
    assert r["changed"] is True, r
    assert r["attempts"], "expected at least one lock wait timeout before success"
    assert any(b["query"] for b in r["attempts"][0]["blockers"])
    blocker, timer = hold_lock_in_background(db, ["BEGIN", "SELECT * FROM orders"], 10)
    try:
        r = ansible.run(COLUMN, dict(db.params, table="orders", column="n2", type="int", lock_timeout=1,
                                     lock_retries=0))
    finally:
        timer.cancel()
        blocker.rollback()
        blocker.close()
    assert r["failed"] and "Nothing was changed" in r["msg"]
    assert "n2" not in db.query("SHOW CREATE TABLE orders")[0][1]


def test_pg_maintenance_lock(ansible, pg_db):
    pg_db.execute("CREATE TABLE t (id int)")
    holder = pg_db.connect()
    holder.execute("SET application_name = 'other-maintenance-run'")
    holder.execute("SELECT pg_advisory_lock(%s, hashtext(current_database()))", [LOCK_CLASS])
    args = dict(pg_db.params, table="t", column="c", type="int")
    try:
        r = ansible.run(COLUMN, args)
        assert r["failed"] and "maintenance lock" in r["msg"], r
        assert "pid %d" % holder.info.backend_pid in r["msg"] and "other-maintenance-run" in r["msg"]
        # Check mode takes no lock: it changes nothing, so it may run beside a real run.
        assert ansible.run(COLUMN, args, check=True)["changed"] is True
        threading.Timer(1.5, lambda: holder.execute(
            "SELECT pg_advisory_unlock(%s, hashtext(current_database()))", [LOCK_CLASS])).start()
        r = ansible.run(COLUMN, dict(args, wait_for_lock=15))
        assert r["changed"] is True, r
    finally:
        holder.close()
    # The module released its lock: another session can take it at once.
    assert pg_db.query("SELECT pg_try_advisory_lock(%s, hashtext(current_database()))", [LOCK_CLASS]) == [(True,)]


def test_mariadb_maintenance_lock(ansible, mysql_db):
    mysql_db.execute("CREATE TABLE t (id int)")
    holder = mysql_db.connect()
    cur = holder.cursor()
    cur.execute("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", ["dbops.maintenance:%s" % mysql_db.name])
    got, conn_id = cur.fetchone()
    assert got == 1
    try:
        r = ansible.run(COLUMN, dict(mysql_db.params, table="t", column="c", type="int"))
        assert r["failed"] and "maintenance lock" in r["msg"] and "connection id %d" % conn_id in r["msg"], r
        assert "`c`" not in mysql_db.query("SHOW CREATE TABLE t")[0][1]
    finally:
        holder.close()
    r = ansible.run(COLUMN, dict(mysql_db.params, table="t", column="c", type="int"))
    assert r["changed"] is True


def test_sqlite_maintenance_lock(ansible, sqlite_db):
    sqlite_db.execute("CREATE TABLE t (id integer)")
    with open(sqlite_db.name, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        r = ansible.run(COLUMN, dict(sqlite_db.params, table="t", column="c", type="int"))
        assert r["failed"] and "maintenance lock" in r["msg"], r
        assert "process" in r["msg"]
    r = ansible.run(COLUMN, dict(sqlite_db.params, table="t", column="c", type="int"))
    assert r["changed"] is True


def test_sqlite_missing_file_is_not_created(ansible, tmp_path):
    path = tmp_path / "typo.db"
    r = ansible.run(COLUMN, dict(engine="sqlite", database=str(path), table="t", column="c", type="int"))
    assert r["failed"] and "does not exist" in r["msg"]
    assert not path.exists()


def test_password_never_in_output_pg(ansible, pg_db):
    check_password_never_in_output(ansible, pg_db)


def test_password_never_in_output_mariadb(ansible, mysql_db):
    check_password_never_in_output(ansible, mysql_db)


def check_password_never_in_output(ansible, db):
    db.execute("CREATE TABLE t (id int)")
    password = db.params["login_password"]
    play = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Add a column (succeeds)
      dbops.maintenance.column_ensure: "{{ conn | combine({'table': 't', 'column': 'c', 'type': 'int'}) }}"
    - name: Wrong database (fails)
      dbops.maintenance.column_ensure: "{{ conn | combine({'database': 'nope_db', 'table': 't', 'column': 'c', 'type': 'int'}) }}"
      ignore_errors: true
    - name: Password as a value elsewhere (fails, and must be masked)
      dbops.maintenance.enum_add: >-
        {{ conn | combine({'table': 't', 'column': 'id', 'values': [conn.login_password]}) if conn.engine == 'mysql'
           else conn | combine({'name': conn.login_password, 'values': ['x']}) }}
      ignore_errors: true
"""
    r = ansible.playbook(play, extra_vars={"conn": db.params}, verbosity=4, diff=True)
    out = r.stdout + r.stderr
    assert "Wrong database" in out and "nope_db" in out, out[-3000:]
    assert password not in out, "the password leaked into ansible-playbook -vvvv output"
    # Wrong password: the error must not echo what was tried either.
    wrong = "Wr0ng-" + password[::-1]
    r = ansible.run(COLUMN, dict(db.params, login_password=wrong, table="t", column="c", type="int"),
                    verbosity=4)
    assert r["failed"] and wrong not in r.stdout + r.stderr
