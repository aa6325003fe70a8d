"""Production safety of the connection layer, through Ansible on real servers:
lock timeouts with retries, the maintenance lock, and secrets kept out of every output.

Every lock these tests hold is released on an event (the module seen waiting for it, seen
giving up and watching, or returned: tests/integration/lock_events.py), never on a timer, and
each test asserts that the wait happened (the module's attempts and the server's view)."""

from __future__ import annotations

import fcntl
import json

import pytest

from lock_events import ModuleRun, Reader, ServerView, hold_transaction, wait_for, watch_window

COLUMN = "dbops.maintenance.column_ensure"
ENUM = "dbops.maintenance.enum_add"
LOCK_CLASS = 0x64626F70


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def pg_pid(conn):
    return conn.info.backend_pid


@pytest.fixture
def pg_orders(pg_db):
    pg_db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
    pg_db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) g")
    return pg_db


def has_column(db, table, column):
    return db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = %s "
                    "AND column_name = %s", [table, column]) == [(1,)]


def test_pg_lock_timeout_retries_and_does_not_stall_traffic(ansible, pg_orders):
    """lock_timeout: the DDL leaves the lock queue while the blocker still holds the table
    (without it, it would wait for the blocker and the reader behind it for the whole hold)."""
    db = pg_orders
    reader = Reader(db, "SELECT total FROM orders WHERE id = 7")
    reader.start()
    reader.ready.wait(30)
    view = ServerView(db, reader)
    view.start()
    view.first.wait(30)
    # A long transaction that read the table: ALTER TABLE must wait for it.
    blocker, pid = hold_transaction(db, ["SELECT count(*) FROM orders /* report job */"])
    run = ModuleRun(ansible, COLUMN, dict(db.params, table="orders", column="note", type="text",
                                          lock_timeout=1, lock_retries=8))
    try:
        run.start()
        queued = wait_for(lambda: view.queueings() >= 1 and view.module_waiting(), run, "the DDL queued")
        # Seen leaving the queue while the blocker still holds the table: the lock timeout.
        left = wait_for(view.module_watching, run, "the DDL out of the queue")
        # The blocker holds on while the reader completes queries (an event count, not a time).
        w0, w1 = watch_window(view, reader, run, queries=20)
        still_running = not run.done.is_set()
        blocker.commit()
        r = run.wait()
    finally:
        blocker.close()
        run.done.wait(300)
        view.finish()
        reader.finish()
    assert queued and left and still_running, r
    assert r["changed"] is True, r
    assert len(r["attempts"]) >= 1 and r["attempts"][0]["error"].startswith("canceling statement due to lock timeout")
    b = r["attempts"][0]["blockers"]
    assert b and b[0]["pid"] == pid and "report job" in b[0]["query"], r["attempts"]
    # Traffic queued behind the waiting ALTER for one lock timeout, not for the whole hold: while the
    # blocker still held the table, the module stayed out of the queue and the reader's queries ran
    # without waiting (the numbers are in the benchmark).
    assert view.module_waits(w0, w1) == 0 and view.reader_waits(w0, w1) == 0
    assert reader.completed_between(w0, w1) >= 10
    assert has_column(db, "orders", "note")


def test_pg_retries_exhausted_names_blocker_and_changes_nothing(ansible, pg_orders):
    """lock_retries=0: one lock timeout ends the task (the blocker is held until the module returned)."""
    db = pg_orders
    blocker, pid = hold_transaction(db, ["SELECT count(*) FROM orders /* nightly export */"])
    try:
        r = ModuleRun(ansible, COLUMN, dict(db.params, table="orders", column="note", type="text",
                                            lock_timeout=0.3, lock_retries=0, lock_wait_total=60)).start_and_wait()
    finally:
        blocker.rollback()
        blocker.close()
    assert r["failed"], r
    assert "Nothing was changed" in r["msg"] and "lock_retries=0 reached" in r["msg"], r["msg"]
    assert "pid %d" % pid in r["msg"] and "nightly export" in r["msg"]
    assert len(r["attempts"]) == 1
    assert not has_column(db, "orders", "note")


def test_pg_lock_wait_total_ends_the_watch_names_blocker(ansible, pg_orders):
    """lock_wait_total: a blocker that never ends (held until the module returned) ends the wait."""
    db = pg_orders
    blocker, pid = hold_transaction(db, ["SELECT count(*) FROM orders /* nightly export */"])
    try:
        r = ModuleRun(ansible, COLUMN, dict(db.params, table="orders", column="note", type="text",
                                            lock_timeout=0.3, lock_retries=100, lock_wait_total=1.5)).start_and_wait()
    finally:
        blocker.rollback()
        blocker.close()
    assert r["failed"], r
    assert "lock_wait_total=1.5s reached" in r["msg"] and "Nothing was changed" in r["msg"], r["msg"]
    assert "pid %d" % pid in r["msg"] and "nightly export" in r["msg"]
    assert len(r["attempts"]) == 1 and r["attempts"][0]["waited_s"] > 0, r["attempts"]
    assert not has_column(db, "orders", "note")


def test_pg_enum_add_respects_lock_timeout(ansible, pg_db):
    pg_db.execute("CREATE TYPE mood AS ENUM ('ok')")
    pg_db.execute("CREATE TABLE people (m mood)")
    # An open transaction that altered the type holds its lock until the module returned.
    blocker, pid = hold_transaction(pg_db, ["ALTER TYPE mood ADD VALUE 'meh'"])
    try:
        r = ModuleRun(ansible, ENUM, dict(pg_db.params, name="mood", values=["sad"], lock_timeout=0.3, lock_retries=0)).start_and_wait()
    finally:
        blocker.rollback()
        blocker.close()
    assert r["failed"] and "lock_timeout=0.3" in r["msg"], r
    assert len(r["attempts"]) == 1 and r["attempts"][0]["blockers"][0]["pid"] == pid, r["attempts"]
    assert [x[0] for x in pg_db.query("SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                      "WHERE t.typname = 'mood'")] == ["ok"]


def test_mariadb_lock_wait_timeout_then_retry_succeeds(ansible, mysql_db):
    db = mysql_db
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
    db.execute("INSERT INTO orders VALUES (1, 1)")
    # An open transaction that read the table holds a metadata lock, until the module is seen
    # waiting for it and then seen out of the queue (lock_wait_timeout) while it still holds it.
    blocker, conn_id = hold_transaction(db, ["SELECT * FROM orders"])
    view = ServerView(db, others=[conn_id])
    view.start()
    view.first.wait(30)
    run = ModuleRun(ansible, COLUMN, dict(db.params, table="orders", column="note", type="varchar(20)",
                                          lock_timeout=1, lock_retries=6))
    try:
        run.start()
        queued = wait_for(lambda: view.queueings() >= 1 and view.module_waiting(), run, "the DDL queued")
        left = wait_for(view.module_watching, run, "the DDL out of the queue")
        still_running = not run.done.is_set()
        blocker.commit()
        r = run.wait()
    finally:
        blocker.close()
        run.done.wait(300)
        view.finish()
    assert queued and left and still_running, r
    assert r["changed"] is True, r
    assert r["attempts"], "expected at least one lock wait timeout before success"
    assert conn_id in [b["pid"] for b in r["attempts"][0]["blockers"]], json.dumps(r["attempts"])
    blocker, conn_id = hold_transaction(db, ["SELECT * FROM orders"])
    try:
        r = ModuleRun(ansible, COLUMN, dict(db.params, table="orders", column="n2", type="int", lock_timeout=1,
                                            lock_retries=0)).start_and_wait()
    finally:
        blocker.rollback()
        blocker.close()
    assert r["failed"] and "Nothing was changed" in r["msg"]
    assert "pid %d" % conn_id in r["msg"], r["msg"]
    assert "n2" not in db.query("SHOW CREATE TABLE orders")[0][1]


def _pg_module_polls(db, n):
    """The module's session seen running pg_try_advisory_lock at `n` distinct times (it is queueing
    for the maintenance lock: wait_for_lock), from pg_stat_activity."""
    seen = set()

    def check():
        for start, in db.query("SELECT query_start::text FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name = 'dbops.maintenance/column_ensure' "
                               "AND query LIKE '%%pg_try_advisory_lock%%'"):
            seen.add(start)
        return len(seen) >= n
    return check


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
        assert not has_column(pg_db, "t", "c")
        # Check mode takes no lock: it changes nothing, so it may run beside a real run.
        assert ansible.run(COLUMN, args, check=True)["changed"] is True
        # wait_for_lock: released only once the module is seen trying for the lock again and again.
        run = ModuleRun(ansible, COLUMN, dict(args, wait_for_lock=120))
        run.start()
        polled = wait_for(_pg_module_polls(pg_db, 3), run, "the module polling for the maintenance lock")
        still_running = not run.done.is_set()
        holder.execute("SELECT pg_advisory_unlock(%s, hashtext(current_database()))", [LOCK_CLASS])
        r = run.wait()
    finally:
        holder.close()
    assert polled and still_running, r
    assert r["changed"] is True, r
    assert has_column(pg_db, "t", "c")
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
