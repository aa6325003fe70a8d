"""column_ensure nullable: false on an existing PostgreSQL 12+ column: the online NOT NULL sequence
(plugins/module_utils/online_ddl/not_null.py) through Ansible on the real servers.

CHECK (col IS NOT NULL) NOT VALID -> VALIDATE -> SET NOT NULL -> DROP the check, each step its own
statement; an interrupted sequence resumes from the state it left (a leftover NOT VALID or valid
check, or a check left on a column already NOT NULL); a concurrent writer's longest stall stays
within lock_timeout + 0.5 s (measured on its own queries, no sleeps).
"""

from __future__ import annotations

import hashlib

import pytest

from conftest import DB
from lock_events import ModuleRun, Reader, hold_transaction, wait_for
from migration_batch import run_tasks
from test_column_ensure import snapshot

MODULE = "dbops.maintenance.column_ensure"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


HOSTILE_TABLE = 'we"ird; DROP TABLE x; --'
HOSTILE_COLUMN = 'Back`tick "quoted" \u00fc'


def check_name(table, column, schema="public"):
    """The module's check name contract: dbops_not_null_ + 20 hex of sha256(schema NUL table NUL column)."""
    return "dbops_not_null_" + hashlib.sha256(("%s\0%s\0%s" % (schema, table, column)).encode()).hexdigest()[:20]


def qi(name):
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture
def pg16_db(servers):
    """One server is enough for the timing-free lock scenes (pg15 runs the sequence in the main test)."""
    server = servers["pg16"]
    db = DB(server, server.create_database())
    yield db
    server.drop_database(db.name)


def merged(base, **over):
    """base with some options replaced (a new dict)."""
    return {**base, **over}


def task(db, label, check=False, diff=False, **args):
    return {"name": label, "module": MODULE, "args": {**db.params, **args}, "check": check, "diff": diff}


def ok(r):
    assert not r["failed"], r.get("msg", r)
    return r


def nullable(db, table, column):
    return db.query("SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
                    ["public." + qi(table), column])[0][0]


def checks(db, table):
    return [tuple(r) for r in db.query(
        "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c' ORDER BY 1",
        ["public." + qi(table)])]


def sequence(table, column, start=0):
    qt, name = '"public".%s' % qi(table), qi(check_name(table, column))
    return [
        "ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID" % (qt, name, qi(column)),
        "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (qt, name),
        "ALTER TABLE %s ALTER COLUMN %s SET NOT NULL" % (qt, qi(column)),
        "ALTER TABLE %s DROP CONSTRAINT %s" % (qt, name),
    ][start:]


def test_not_null_sequence_check_mode_idempotent_hostile(ansible, pg_db):
    db = pg_db
    db.execute("CREATE TABLE %s (id int PRIMARY KEY, %s text)" % (qi(HOSTILE_TABLE), qi(HOSTILE_COLUMN)))
    db.execute("INSERT INTO %s SELECT g, 'v' FROM generate_series(1, 500) g" % qi(HOSTILE_TABLE))
    args = dict(table=HOSTILE_TABLE, column=HOSTILE_COLUMN, type="text", nullable=False, alter=True)
    before = snapshot(db)
    res = run_tasks(ansible, [task(db, "check", check=True, diff=True, **args)])
    assert snapshot(db) == before, "check mode changed the catalog"
    c = ok(res["check"])
    assert c["changed"] is True and c["queries"] == sequence(HOSTILE_TABLE, HOSTILE_COLUMN), c["queries"]
    assert c["diff"]["before"]["nullable"] is True and c["diff"]["after"]["nullable"] is False
    db.execute("INSERT INTO %s VALUES (9999, NULL)" % qi(HOSTILE_TABLE))
    res = run_tasks(ansible, [task(db, "null row refused", **args)])
    assert res["null row refused"]["failed"] and "1 row(s) have NULL" in res["null row refused"]["msg"]
    assert res["null row refused"]["queries"] == [] and snapshot(db) == before
    db.execute("UPDATE %s SET %s = 'b' WHERE id = 9999" % (qi(HOSTILE_TABLE), qi(HOSTILE_COLUMN)))
    res = run_tasks(ansible, [task(db, "run", **args), task(db, "again", **args)])
    r = ok(res["run"])
    assert r["changed"] is True and r["queries"] == sequence(HOSTILE_TABLE, HOSTILE_COLUMN), r["queries"]
    assert r["column"]["nullable"] is False
    assert ok(res["again"])["changed"] is False and res["again"]["queries"] == []
    assert nullable(db, HOSTILE_TABLE, HOSTILE_COLUMN) is False
    assert checks(db, HOSTILE_TABLE) == []


def test_interrupted_sequence_resumes_from_each_step(ansible, pg16_db):
    """The states an interrupted run leaves (after step 1, 2 or 3), each made the way that step makes it."""
    db = pg16_db
    for t in ("a", "b", "c"):
        db.execute("CREATE TABLE %s (id int PRIMARY KEY, v int)" % t)
        db.execute("INSERT INTO %s SELECT g, g FROM generate_series(1, 300) g" % t)
    db.execute(sequence("a", "v")[0])                                 # stopped after step 1
    db.execute(sequence("b", "v")[0])
    db.execute(sequence("b", "v")[1])                                 # stopped after step 2
    for s in sequence("c", "v")[:3]:                                  # stopped after step 3
        db.execute(s)
    db.execute("CREATE TABLE d (id int PRIMARY KEY, v int)")
    db.execute("ALTER TABLE d ADD CONSTRAINT %s CHECK (v > 0) NOT VALID" % qi(check_name("d", "v")))
    res = run_tasks(ansible, [
        task(db, "check a", check=True, table="a", column="v", type="int", nullable=False, alter=True),
        task(db, "a", table="a", column="v", type="int", nullable=False, alter=True),
        task(db, "b", table="b", column="v", type="int", nullable=False, alter=True),
        task(db, "c", table="c", column="v", type="int", nullable=False, alter=True),
        task(db, "c again", table="c", column="v", type="int", nullable=False, alter=True),
        task(db, "not ours", table="d", column="v", type="int", nullable=False, alter=True),
    ])
    assert ok(res["check a"])["queries"] == sequence("a", "v", 1)
    assert ok(res["a"])["queries"] == sequence("a", "v", 1)
    assert ok(res["b"])["queries"] == sequence("b", "v", 2)
    r = ok(res["c"])
    assert r["changed"] is True and r["queries"] == sequence("c", "v", 3), r
    assert ok(res["c again"])["changed"] is False
    assert res["not ours"]["failed"] and "is not the NOT NULL check" in res["not ours"]["msg"], res["not ours"]
    assert res["not ours"]["queries"] == []
    for t in ("a", "b", "c"):
        assert nullable(db, t, "v") is False and checks(db, t) == [], t
    assert nullable(db, "d", "v") is True


def test_writer_not_stalled_during_not_null_sequence(ansible, pg16_db):
    db = pg16_db
    lock_timeout = 1.0
    db.execute("CREATE TABLE w (id bigserial PRIMARY KEY, v int, pad text)")
    db.execute("INSERT INTO w (v, pad) SELECT g, repeat('x', 40) FROM generate_series(1, 100000) g")
    writer = Reader(db, "INSERT INTO w (v, pad) VALUES (1, 'writer') RETURNING id")
    writer.start()
    writer.ready.wait(30)
    try:
        start = writer.completed()
        wait_for(lambda: writer.completed() >= start + 20, None, "the writer running")
        run = ModuleRun(ansible, MODULE, dict(db.params, table="w", column="v", type="int", nullable=False,
                                              alter=True, lock_timeout=lock_timeout))
        r = run.start_and_wait()
        t0, t1 = run.started_at, run.ended_at
        after = writer.completed()
        wait_for(lambda: writer.completed() >= after + 5, None, "the writer after the change")
    finally:
        queries = writer.finish()
    ok(r)
    assert r["queries"] == sequence("w", "v"), r["queries"]
    during = [(s, e) for s, e in queries if e >= t0 and s <= t1]
    assert len(during) >= 5, "the writer did not run during the change (%d writes)" % len(during)
    stall = max(e - s for s, e in during)
    assert stall <= lock_timeout + 0.5, "a write stalled %.2f s during the NOT NULL sequence" % stall
    assert nullable(db, "w", "v") is False and checks(db, "w") == []


def validating_pid(db):
    """The module's backend while its VALIDATE waits for a lock (None before that)."""
    rows = db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'dbops.maintenance/column_ensure' AND wait_event_type = 'Lock' "
                    "AND query LIKE 'ALTER TABLE % VALIDATE CONSTRAINT %'")
    return rows[0][0] if rows else None


def test_session_killed_during_validate_resumes(ansible, pg16_db):
    """The module's session is terminated while its VALIDATE waits (a held SHARE UPDATE EXCLUSIVE lock, as a
    VACUUM holds); the next run resumes at VALIDATE. Step 1 (ADD ... NOT VALID, ACCESS EXCLUSIVE) is made
    beforehand with the module's own statement: any lock that stops VALIDATE would stop step 1 as well."""
    db = pg16_db
    db.execute("CREATE TABLE k (id int PRIMARY KEY, v int)")
    db.execute("INSERT INTO k SELECT g, g FROM generate_series(1, 500) g")
    db.execute(sequence("k", "v")[0])
    holder, _pid = hold_transaction(db, ["LOCK TABLE k IN SHARE UPDATE EXCLUSIVE MODE"])
    args = dict(db.params, table="k", column="v", type="int", nullable=False, alter=True, lock_timeout=600,
                lock_retries=0)
    run = ModuleRun(ansible, MODULE, args)
    try:
        run.start()
        assert wait_for(lambda: validating_pid(db) is not None, run, "VALIDATE waiting for the held lock"), run.result
        assert db.query("SELECT pg_terminate_backend(%s)", [validating_pid(db)])[0][0] is True
        r = run.wait()
    finally:
        holder.rollback()
        holder.close()
    assert r["failed"], r
    assert "Unexpected error" not in r["msg"] and db.params["login_password"] not in str(r), r["msg"]
    assert checks(db, "k") == [(check_name("k", "v"), False)] and nullable(db, "k", "v") is True
    res = run_tasks(ansible, [task(db, "check", check=True, table="k", column="v", type="int", nullable=False,
                                   alter=True),
                              task(db, "resume", table="k", column="v", type="int", nullable=False, alter=True),
                              task(db, "again", table="k", column="v", type="int", nullable=False, alter=True)])
    assert ok(res["check"])["queries"] == sequence("k", "v", 1)
    r = ok(res["resume"])
    assert r["changed"] is True and r["queries"] == sequence("k", "v", 1), r["queries"]
    assert ok(res["again"])["changed"] is False
    assert nullable(db, "k", "v") is False and checks(db, "k") == []
