"""dbops.maintenance.index_ensure through ansible-playbook against the real servers.

Each test batches its module runs into one playbook (migration_batch.run_tasks) and asserts on
every result and on the catalog itself; check-mode runs are compared with a catalog snapshot.
Lock scenes (a held transaction, a killed build, a concurrent writer) are driven by events
(lock_events.py), never by sleeps.
"""

from __future__ import annotations

import pytest

from conftest import DB
from lock_events import ModuleRun, Reader, ServerView, hold_transaction, wait_for
from migration_batch import run_tasks
from test_column_ensure import snapshot

MODULE = "dbops.maintenance.index_ensure"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


HOSTILE_TABLE = 'we"ird; DROP TABLE x; --'
HOSTILE_INDEX = 'ix "q"; DROP TABLE x; -- é'
HOSTILE_COLUMN = 'Back`tick "quoted" ü'


def qi(db, name):
    if db.engine == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def merged(base, **over):
    """base with some options replaced (a new dict)."""
    return {**base, **over}


def task(db, label, check=False, diff=False, **args):
    return {"name": label, "module": MODULE, "args": {**db.params, **args}, "check": check, "diff": diff}


def pg_index(db, name):
    """(valid, unique, definition) of a PostgreSQL index in public, or None."""
    rows = db.query("SELECT i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relname = %s", [name])
    return tuple(rows[0]) if rows else None


def my_index(db, table, name):
    return [tuple(r) for r in db.query(
        "SELECT NON_UNIQUE, COLUMN_NAME, INDEX_TYPE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s AND INDEX_NAME = %s ORDER BY SEQ_IN_INDEX", [table, name])]


def ok(r):
    assert not r["failed"], r.get("msg", r)
    assert "Unexpected error" not in r.get("msg", ""), r
    return r


def refused(r, *words):
    assert r["failed"], r
    msg = r["msg"]
    assert "Unexpected error" not in msg and "Traceback" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def make_pg_table(db, table="t", rows=200):
    db.execute("CREATE TABLE %s (id int PRIMARY KEY, %s text, n int, email text)"
               % (qi(db, table), qi(db, HOSTILE_COLUMN)))
    db.execute("INSERT INTO %s SELECT g, 'v' || g, g %% 7, 'U' || g || '@x' FROM generate_series(1, %d) g"
               % (qi(db, table), rows))


# --------------------------------------------------------------------------
# PostgreSQL: check mode, create, idempotence, diff, refusal, replace, drop - hostile names
# --------------------------------------------------------------------------

def test_pg_lifecycle_hostile_names(ansible, pg_db):
    db = pg_db
    make_pg_table(db, HOSTILE_TABLE)
    base = dict(table=HOSTILE_TABLE, name=HOSTILE_INDEX)
    want = dict(base, columns=[HOSTILE_COLUMN, "n"], expressions=["lower(email)"], where="n > 0", unique=False)
    create_sql = ('CREATE INDEX CONCURRENTLY "ix ""q""; DROP TABLE x; -- \u00e9" ON "public"."we""ird; DROP TABLE '
                  'x; --" ("Back`tick ""quoted"" \u00fc", "n", (lower(email))) WHERE n > 0')
    drop_sql = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."ix ""q""; DROP TABLE x; -- \u00e9"'

    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check create", check=True, diff=True, **want),
        task(db, "check absent", check=True, state="absent", **base),
    ])
    assert snapshot(db) == before, "check mode changed the catalog"
    r = ok(res["check create"])
    assert r["changed"] is True and r["queries"] == [create_sql], r["queries"]
    want_keys = ['"Back`tick ""quoted"" \u00fc"', "n", "lower(email)"]
    assert r["diff"]["before"] == {} and r["diff"]["after"]["keys"] == want_keys, r["diff"]
    assert r["index"]["where"] == "n > 0" and r["index"]["method"] == "btree", r["index"]
    assert ok(res["check absent"])["changed"] is False and res["check absent"]["queries"] == []
    assert pg_index(db, HOSTILE_INDEX) is None

    res = run_tasks(ansible, [
        task(db, "create", diff=True, **want),
        task(db, "again", **want),
        task(db, "same in another spelling", **merged(want, expressions=["LOWER( email )"], where="(n>0)")),
        task(db, "other definition", **merged(want, unique=True)),
        task(db, "check replace", check=True, replace=True, **merged(want, where="n > 1")),
    ])
    r = ok(res["create"])
    assert r["changed"] is True and r["queries"] == [create_sql] and r["repaired"] is False, r
    assert r["index"]["valid"] is True and r["diff"]["after"]["where"] == "n > 0", r
    for name in ("again", "same in another spelling"):
        assert ok(res[name])["changed"] is False and res[name]["queries"] == [], (name, res[name])
    msg = refused(res["other definition"], "exists with another definition", "replace: true")
    assert res["other definition"]["differences"] == ["unique"], res["other definition"]
    assert "nothing was changed" in msg
    r = ok(res["check replace"])
    assert r["changed"] is True and r["differences"] == ["where"], r
    assert len(r["queries"]) == 3, r["queries"]
    assert r["queries"][0].startswith('CREATE INDEX CONCURRENTLY "dbops_new_'), r["queries"]
    assert r["queries"][0].endswith("WHERE n > 1"), r["queries"]
    assert r["queries"][2].startswith('ALTER INDEX "public"."dbops_new_'), r["queries"]
    assert r["queries"][1] == drop_sql and r["queries"][2].endswith('RENAME TO "ix ""q""; DROP TABLE x; -- \u00e9"')
    valid, unique, definition = pg_index(db, HOSTILE_INDEX)
    assert valid and not unique and "WHERE (n > 0)" in definition, definition

    res = run_tasks(ansible, [
        task(db, "replace", **merged(want, where="n > 1", unique=True, replace=True)),
        task(db, "replace again", **merged(want, where="n > 1", unique=True, replace=True)),
        task(db, "check drop", check=True, state="absent", **base),
        task(db, "drop", state="absent", **base),
        task(db, "drop again", state="absent", **base),
    ])
    r = ok(res["replace"])
    assert r["changed"] is True and sorted(r["differences"]) == ["unique", "where"], r
    assert len(r["queries"]) == 3 and r["queries"][1] == drop_sql, r["queries"]
    assert ok(res["replace again"])["changed"] is False
    assert ok(res["check drop"])["queries"] == [drop_sql]
    assert ok(res["drop"])["changed"] is True and res["drop"]["queries"] == [drop_sql]
    assert ok(res["drop again"])["changed"] is False and res["drop again"]["queries"] == []
    assert pg_index(db, HOSTILE_INDEX) is None
    assert db.query("SELECT count(*) FROM pg_class WHERE relname LIKE 'dbops%'")[0][0] == 0
    assert db.query("SELECT count(*) FROM %s" % qi(db, HOSTILE_TABLE))[0][0] == 200


# --------------------------------------------------------------------------
# PostgreSQL: refusals, nothing changed
# --------------------------------------------------------------------------

def test_pg_refusals_and_adversarial(ansible, pg_db):
    db = pg_db
    make_pg_table(db)
    db.execute("INSERT INTO t VALUES (1000, 'dup', 1, 'dup@x'), (1001, 'dup', 1, 'dup@x')")
    db.execute("CREATE VIEW v AS SELECT * FROM t")
    db.execute("CREATE TABLE other (id int)")
    db.execute("CREATE INDEX other_idx ON other (id)")
    db.execute("CREATE TABLE u (id int, CONSTRAINT u_id_key UNIQUE (id))")
    before = snapshot(db)
    cases = {
        "semicolon in where": dict(columns=["n"], where="n > 0; DROP TABLE t"),
        "second statement in expression": dict(expressions=["1); DROP TABLE t; --"]),
        "comment in expression": dict(expressions=["lower(email) -- x"]),
        "alias in expression": dict(expressions=["lower(email) AS e"]),
        "clause in where": dict(columns=["n"], where="n > 0 ORDER BY 1"),
        "no keys": dict(),
        "empty column": dict(columns=[""]),
        "unknown column": dict(columns=["emial"]),
        "unknown method": dict(columns=["n"], method="btree; DROP TABLE t"),
        "bad type unique": dict(columns=["n"], unique="maybe"),
        "view": dict(table="v", columns=["n"]),
        "missing table": dict(table="tt", columns=["n"]),
        "index of another table": dict(name="other_idx", columns=["n"]),
        "constraint index": dict(table="u", name="u_id_key", columns=["id"]),
        "table name as index": dict(name="other", columns=["n"]),
        "volatile expression": dict(expressions=["random()"]),
        "zero lock timeout": dict(columns=["n"], lock_timeout=0),
    }
    res = run_tasks(ansible, [task(db, k, **merged(dict(table="t", name="t_ix"), **v)) for k, v in cases.items()]
                    + [task(db, "duplicates", table="t", name="t_email_uq", columns=["email"], unique=True)])
    expect = {
        "semicolon in where": '";" outside any string', "second statement in expression": "expressions[0]",
        "comment in expression": "comment", "alias in expression": "exactly one SQL expression",
        "clause in where": "exactly one SQL expression", "no keys": "columns and/or expressions",
        "empty column": "columns[0] is empty", "unknown column": "Similar names found: email",
        "unknown method": "does not accept this index definition", "bad type unique": "unique",
        "view": "is a view", "missing table": "does not exist", "index of another table": "another table",
        "constraint index": "belongs to the constraint", "table name as index": "not an index",
        "volatile expression": "IMMUTABLE", "zero lock timeout": "lock_timeout must be more than 0",
    }
    for k in cases:
        refused(res[k], expect[k])
        assert res[k].get("queries", []) == [], (k, res[k])
    msg = refused(res["duplicates"], "could not create unique index", "INVALID index the failed build left was dropped")
    assert res["duplicates"]["queries"][-1].startswith("DROP INDEX CONCURRENTLY"), res["duplicates"]
    assert snapshot(db) == before, "a refusal changed the catalog"
    assert db.query("SELECT count(*) FROM pg_class WHERE relname IN ('t_ix', 't_email_uq')")[0][0] == 0
    assert "********" not in msg and db.params["login_password"] not in str(res)


# --------------------------------------------------------------------------
# PostgreSQL: an INVALID index left by a killed build is repaired by the next run
# --------------------------------------------------------------------------

def module_pid(db):
    rows = db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'dbops.maintenance/index_ensure' AND wait_event_type = 'Lock'")
    return rows[0][0] if rows else None


def test_pg_killed_build_leaves_invalid_index_next_run_repairs(ansible, pg_db):
    db = pg_db
    make_pg_table(db)
    # A writer's open transaction: CREATE INDEX CONCURRENTLY, after creating the (invalid) catalog entry,
    # waits for it to end - the build is then in the state a killed session leaves.
    holder, _pid = hold_transaction(db, ["INSERT INTO t VALUES (5000, 'w', 1, 'w@x')"])
    args = dict(db.params, table="t", name="t_n_idx", columns=["n"], lock_timeout=600, lock_retries=0)
    run = ModuleRun(ansible, MODULE, args)
    try:
        run.start()
        assert wait_for(lambda: module_pid(db) is not None and pg_index(db, "t_n_idx") is not None, run,
                        "the build waiting for the open transaction"), run.result
        pid = module_pid(db)
        assert db.query("SELECT pg_terminate_backend(%s)", [pid])[0][0] is True
        r = run.wait()
    finally:
        holder.rollback()
        holder.close()
    assert r["failed"], r
    assert pg_index(db, "t_n_idx")[0] is False, "the killed build left no INVALID index"
    res = run_tasks(ansible, [
        task(db, "check repair", check=True, table="t", name="t_n_idx", columns=["n"]),
        task(db, "repair", table="t", name="t_n_idx", columns=["n"]),
        task(db, "again", table="t", name="t_n_idx", columns=["n"]),
    ])
    drop = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_n_idx"'
    create = 'CREATE INDEX CONCURRENTLY "t_n_idx" ON "public"."t" ("n")'
    c = ok(res["check repair"])
    assert c["queries"] == [drop, create] and c["repaired"] is True and "valid" in c["differences"], c
    r = ok(res["repair"])
    assert r["changed"] is True and r["repaired"] is True and r["queries"] == [drop, create], r
    assert r["index"]["valid"] is True
    assert ok(res["again"])["changed"] is False
    assert pg_index(db, "t_n_idx")[0] is True


def test_pg_lock_timeout_during_build_drops_invalid_and_retries(ansible, pg_db):
    """The build's wait for an older writer hits lock_timeout: the INVALID index it leaves is dropped
    before the retry, which runs once the writer is gone (released when the module is seen watching it)."""
    db = pg_db
    make_pg_table(db)
    holder, pid = hold_transaction(db, ["INSERT INTO t VALUES (5000, 'w', 1, 'w@x')"])
    view = ServerView(db)
    view.start()
    view.first.wait(30)
    args = dict(db.params, table="t", name="t_n_idx", columns=["n"], lock_timeout=0.5, lock_retries=3,
                lock_wait_total=300)
    run = ModuleRun(ansible, MODULE, args)
    try:
        run.start()
        assert wait_for(view.module_watching, run, "the module watching the writer after its lock timeout"), \
            run.result
        assert pg_index(db, "t_n_idx")[0] is False  # the timed-out build's leftover, not yet retried
        holder.commit()
        r = run.wait()
    finally:
        view.finish()
        try:
            holder.rollback()
        finally:
            holder.close()
    ok(r)
    drop = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."t_n_idx"'
    create = 'CREATE INDEX CONCURRENTLY "t_n_idx" ON "public"."t" ("n")'
    assert r["queries"] == [drop, create], r["queries"]
    assert len(r["attempts"]) == 1 and r["attempts"][0]["blockers"][0]["pid"] == pid, r["attempts"]
    assert pg_index(db, "t_n_idx")[0] is True


# --------------------------------------------------------------------------
# a concurrent writer is never stalled longer than lock_timeout + 0.5 s while the index builds
# --------------------------------------------------------------------------

@pytest.fixture
def pg16_db(servers):
    """One PostgreSQL server is enough for the writer scene (both run every other PostgreSQL test)."""
    server = servers["pg16"]
    db = DB(server, server.create_database())
    yield db
    server.drop_database(db.name)


def test_writer_not_stalled_during_build_postgresql(ansible, pg16_db):
    writer_scene(ansible, pg16_db)


def test_writer_not_stalled_during_build_mariadb(ansible, mysql_db):
    writer_scene(ansible, mysql_db)


def writer_scene(ansible, db):
    engine = db.engine
    lock_timeout = 1.0
    if engine == "postgresql":
        db.execute("CREATE TABLE w (id bigserial PRIMARY KEY, v int, pad text)")
        db.execute("INSERT INTO w (v, pad) SELECT g % 1000, repeat('x', 40) FROM generate_series(1, 100000) g")
        writer_sql = "INSERT INTO w (v, pad) VALUES (1, 'writer') RETURNING id"
    else:
        db.execute("CREATE TABLE w (id bigint AUTO_INCREMENT PRIMARY KEY, v int, pad varchar(60)) ENGINE=InnoDB")
        db.execute("INSERT INTO w (v, pad) SELECT seq % 1000, repeat('x', 40) FROM seq_1_to_100000")
        writer_sql = "INSERT INTO w (v, pad) VALUES (1, 'writer') RETURNING id"
    writer = Reader(db, writer_sql)
    writer.start()
    writer.ready.wait(30)
    try:
        start = writer.completed()
        wait_for(lambda: writer.completed() >= start + 20, None, "the writer running")
        run = ModuleRun(ansible, MODULE, dict(db.params, table="w", name="w_v_idx", columns=["v", "pad"],
                                              lock_timeout=lock_timeout))
        r = run.start_and_wait()
        t0, t1 = run.started_at, run.ended_at
        after = writer.completed()
        wait_for(lambda: writer.completed() >= after + 5, None, "the writer after the build")
    finally:
        queries = writer.finish()
    ok(r)
    assert r["changed"] is True
    during = [(s, e) for s, e in queries if e >= t0 and s <= t1]
    assert len(during) >= 5, "the writer did not run during the build (%d writes)" % len(during)
    stall = max(e - s for s, e in during)
    assert stall <= lock_timeout + 0.5, "a write stalled %.2f s while the index was built" % stall
    if engine == "postgresql":
        assert pg_index(db, "w_v_idx")[0] is True
        assert r["queries"] == ['CREATE INDEX CONCURRENTLY "w_v_idx" ON "public"."w" ("v", "pad")']
    else:
        assert [c for _u, c, _t in my_index(db, "w", "w_v_idx")] == ["v", "pad"]
        assert r["queries"] == ["ALTER TABLE `w` ADD INDEX `w_v_idx` (`v`, `pad`), ALGORITHM=INPLACE, LOCK=NONE"]


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------

def test_mysql_lifecycle_and_refusals(ansible, mysql_db):
    db = mysql_db
    table = "we`ird; DROP TABLE x; --"
    db.execute("CREATE TABLE %s (id int PRIMARY KEY, %s varchar(50), n int) ENGINE=InnoDB"
               % (qi(db, table), qi(db, HOSTILE_COLUMN)))
    db.execute("INSERT INTO %s SELECT seq, concat('v', seq), seq %% 5 FROM seq_1_to_300" % qi(db, table))
    db.execute("CREATE TABLE m (id int PRIMARY KEY, k int) ENGINE=MEMORY")
    name = "ix`q; DROP TABLE x; --"
    base = dict(table=table, name=name)
    want = dict(base, columns=[HOSTILE_COLUMN, "n"])
    qt, qn = qi(db, table), qi(db, name)
    add = "ALTER TABLE %s ADD INDEX %s (%s, `n`), ALGORITHM=INPLACE, LOCK=NONE" % (qt, qn, qi(db, HOSTILE_COLUMN))
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check", check=True, diff=True, **want),
        task(db, "where refused", where="n > 0", **want),
        task(db, "expressions refused", **merged(base, expressions=["lower(n)"])),
        task(db, "bad method", method="GIN", **want),
        task(db, "primary", **merged(want, name="PRIMARY")),
        task(db, "unknown column", **merged(want, columns=["nn"])),
        task(db, "schema refused", schema="public", **want),
    ])
    assert snapshot(db) == before
    r = ok(res["check"])
    assert r["queries"] == [add] and r["alternatives"][0]["statement"].endswith("ALGORITHM=COPY"), r
    assert r["alternatives"][0]["requires"] == "allow_rewrite"
    refused(res["where refused"], "partial")
    refused(res["expressions refused"], "functional")
    refused(res["bad method"], "BTREE or HASH")
    refused(res["primary"], "primary key")
    refused(res["unknown column"], "does not exist")
    refused(res["schema refused"], "PostgreSQL only")
    res = run_tasks(ansible, [
        task(db, "create", diff=True, **want),
        task(db, "again", **want),
        task(db, "other", unique=True, **want),
        task(db, "replace", unique=True, replace=True, **want),
        task(db, "memory table needs a copy", table="m", name="m_k", columns=["k"], method="HASH"),
        task(db, "memory table copy allowed", table="m", name="m_k", columns=["k"], method="HASH", allow_rewrite=True),
        task(db, "drop", state="absent", **base),
        task(db, "drop again", state="absent", **base),
    ])
    r = ok(res["create"])
    assert r["changed"] and r["queries"] == [add] and r["diff"]["after"]["keys"] == [HOSTILE_COLUMN, "n"], r
    assert ok(res["again"])["changed"] is False and res["again"]["queries"] == []
    refused(res["other"], "another definition")
    assert res["other"]["differences"] == ["unique"]
    r = ok(res["replace"])
    assert r["queries"] == ["ALTER TABLE %s DROP INDEX %s, ADD UNIQUE INDEX %s (%s, `n`), ALGORITHM=INPLACE, "
                            "LOCK=NONE" % (qt, qn, qn, qi(db, HOSTILE_COLUMN))], r["queries"]
    refused(res["memory table needs a copy"], "cannot do this change in place", "allow_rewrite: true")
    assert res["memory table needs a copy"]["queries"] == []
    assert ok(res["memory table copy allowed"])["queries"] == [
        "ALTER TABLE `m` ADD INDEX `m_k` (`k`) USING HASH, ALGORITHM=COPY"]
    assert my_index(db, "m", "m_k") == [(1, "k", "HASH")]
    assert ok(res["drop"])["queries"] == ["ALTER TABLE %s DROP INDEX %s, ALGORITHM=INPLACE, LOCK=NONE" % (qt, qn)]
    assert ok(res["drop again"])["changed"] is False
    assert my_index(db, table, name) == []
    assert db.query("SELECT count(*) FROM %s" % qt)[0][0] == 300


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------

def test_sqlite_lifecycle_and_refusals(ansible, sqlite_db):
    db = sqlite_db
    db.execute('CREATE TABLE %s (id integer PRIMARY KEY, %s text, n int, UNIQUE (n, id))'
               % (qi(db, HOSTILE_TABLE), qi(db, HOSTILE_COLUMN)))
    db.execute("INSERT INTO %s (%s, n) VALUES ('a', 1), ('b', 2)" % (qi(db, HOSTILE_TABLE), qi(db, HOSTILE_COLUMN)))
    base = dict(table=HOSTILE_TABLE, name=HOSTILE_INDEX)
    want = dict(base, columns=[HOSTILE_COLUMN], expressions=["lower(n)"], where="n > 0")
    create = ('CREATE INDEX "ix ""q""; DROP TABLE x; -- \u00e9" ON "we""ird; DROP TABLE x; --" '
              '("Back`tick ""quoted"" \u00fc", (lower(n))) WHERE n > 0')
    auto = db.query("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NULL")[0][0]
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check", check=True, **want),
        task(db, "method refused", method="btree", **want),
        task(db, "injection", **merged(want, where="n > 0; DROP TABLE t")),
        task(db, "automatic index", table=HOSTILE_TABLE, name=auto, columns=["n"]),
    ])
    assert snapshot(db) == before
    assert ok(res["check"])["queries"] == [create]
    refused(res["method refused"], "SQLite has one kind")
    refused(res["injection"], '";"')
    refused(res["automatic index"], "automatic index")
    res = run_tasks(ansible, [
        task(db, "create", **want),
        task(db, "again", **want),
        task(db, "again respelled", **merged(want, expressions=["LOWER(n)"], where="(n>0)")),
        task(db, "other", **merged(want, where="n > 1")),
        task(db, "replace", replace=True, **merged(want, where="n > 1")),
        task(db, "drop", state="absent", **base),
        task(db, "drop again", state="absent", **base),
    ])
    assert ok(res["create"])["queries"] == [create]
    assert ok(res["again"])["changed"] is False
    assert ok(res["again respelled"])["changed"] is False, res["again respelled"]
    refused(res["other"], "another definition")
    assert ok(res["replace"])["changed"] is True and len(res["replace"]["queries"]) == 2
    assert ok(res["drop"])["changed"] is True
    assert ok(res["drop again"])["changed"] is False
    assert db.query("SELECT count(*) FROM sqlite_master WHERE name = ?", (HOSTILE_INDEX,))[0][0] == 0
