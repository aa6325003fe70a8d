"""constraint_ensure on MariaDB 10.11 through Ansible: FOREIGN KEY in place (foreign_key_checks=0, then the
existing rows proved by an anti-join; a failed proof drops it again), UNIQUE / PRIMARY KEY in place, CHECK by
a table copy only with allow_rewrite; check mode (schema snapshot, exact statements), idempotence, refusals,
hostile names, the lock timeout, and a concurrent writer's longest stall."""

from __future__ import annotations

import pytest

from lock_events import ModuleRun, wait_for
from migration_batch import run_tasks
from test_column_ensure import snapshot
from test_online_ptosc import Writer

MODULE = "dbops.maintenance.constraint_ensure"
HOSTILE_TABLE = "we`ird; DROP TABLE x; --"
HOSTILE_NAME = "fk `q`; DROP TABLE x; -- \u00e9"
FK_OFF = "SET SESSION foreign_key_checks = 0"
FK_ON = "SET SESSION foreign_key_checks = 1"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def qi(name):
    return "`" + name.replace("`", "``") + "`"


def merged(base, **over):
    return {**base, **over}


def task(db, label, check=False, diff=False, **args):
    return {"name": label, "module": MODULE, "args": {**db.params, **args}, "check": check, "diff": diff}


def ok(r):
    assert not r["failed"], r.get("msg", r)
    return r


def refused(r, *words):
    assert r["failed"], r
    for w in words:
        assert w in r["msg"], (w, r["msg"])
    assert "Unexpected error" not in r["msg"], r["msg"]
    return r


def constraints(db, table):
    return sorted(tuple(r) for r in db.query(
        "SELECT CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", [table]))


def orders(db, table=HOSTILE_TABLE, rows=300):
    db.execute("CREATE TABLE customers (id int PRIMARY KEY, code int, KEY (code))")
    db.execute("INSERT INTO customers (id, code) SELECT seq, seq FROM seq_1_to_50")
    db.execute("CREATE TABLE %s (id int PRIMARY KEY, customer_id int, total int, email varchar(40))" % qi(table))
    db.execute("INSERT INTO %s SELECT seq, seq %% 50 + 1, seq, CONCAT('u', seq) FROM seq_1_to_%d" % (qi(table), rows))


def test_foreign_key_in_place_proved_by_anti_join(ansible, mysql_db):
    db = mysql_db
    orders(db)
    db.execute("INSERT INTO %s VALUES (1000, NULL, 1, 'null key')" % qi(HOSTILE_TABLE))  # MATCH SIMPLE: not checked
    fk = dict(table=HOSTILE_TABLE, name=HOSTILE_NAME, type="foreign_key", columns=["customer_id"],
              references=dict(table="customers", columns=["id"]), on_delete="restrict", lock_timeout=2)
    qt = qi(HOSTILE_TABLE)
    add = ("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) "
           "ON DELETE RESTRICT ON UPDATE NO ACTION" % (qt, qi(HOSTILE_NAME)))
    proof = ("SELECT COUNT(*) FROM %s AS c WHERE c.`customer_id` IS NOT NULL AND NOT EXISTS "
             "(SELECT 1 FROM `customers` AS p WHERE p.`id` = c.`customer_id`)" % qt)
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check", check=True, diff=True, **fk),
        task(db, "schema", **merged(fk, schema="public")),
        task(db, "references.schema", **merged(fk, references=dict(table="customers", columns=["id"], schema="x"))),
        task(db, "validate false", **merged(fk, validate=False)),
        task(db, "replace", **merged(fk, replace=True)),
        task(db, "unknown column", **merged(fk, columns=["customer"])),
        task(db, "unknown table", **merged(fk, references=dict(table="customer", columns=["id"]))),
        task(db, "no index", **merged(fk, columns=["total"], references=dict(table=HOSTILE_TABLE, columns=["total"]))),
        task(db, "columns not a list", **merged(fk, columns={"a": 1})),
        task(db, "bad action", **merged(fk, on_delete="explode")),
        task(db, "sqlite", **merged(fk, engine="sqlite", database="/tmp/x.db")),
        task(db, "allow_rewrite not a bool", **merged(fk, allow_rewrite="perhaps")),
        task(db, "hostile referenced table",
             **merged(fk, references=dict(table="p`; DROP TABLE customers; --", columns=["id"]))),
    ])
    assert snapshot(db) == before, "check mode or a refusal changed the schema"
    r = ok(res["check"])
    assert r["changed"] is True and r["queries"] == [FK_OFF, add + ", ALGORITHM=INPLACE, LOCK=NONE", FK_ON, proof], \
        r["queries"]
    assert r["alternatives"] == [dict(statement=add + ", ALGORITHM=COPY", instead_of=add + ", ALGORITHM=INPLACE, "
                                      "LOCK=NONE", requires="allow_rewrite")], r["alternatives"]
    assert r["diff"]["after"]["references"]["table"] == "customers" and r["diff"]["before"] == {}
    refused(res["schema"], "PostgreSQL only")
    refused(res["references.schema"], "PostgreSQL only")
    refused(res["validate false"], "NOT VALID")
    refused(res["replace"], "state: absent")
    refused(res["unknown column"], "does not exist", "customer_id")
    refused(res["unknown table"], "does not exist", "customers", "foreign_key_checks=0")
    refused(res["no index"], "has no index", "index_ensure")
    assert res["columns not a list"]["failed"]
    assert res["bad action"]["failed"] and "on_delete" in res["bad action"]["msg"]
    refused(res["sqlite"], "SQLite")
    assert res["allow_rewrite not a bool"]["failed"] and "allow_rewrite" in res["allow_rewrite not a bool"]["msg"]
    refused(res["hostile referenced table"], "does not exist")

    db.execute("INSERT INTO %s VALUES (1001, 999, 1, 'orphan'), (1002, 998, 1, 'orphan')" % qt)
    before = snapshot(db)
    res = run_tasks(ansible, [task(db, "orphans", **fk)])
    r = refused(res["orphans"], "2 existing row(s)", "no match", "nothing is left")
    assert r["queries"][-2:] == ["ALTER TABLE %s DROP FOREIGN KEY %s, ALGORITHM=INPLACE, LOCK=NONE" % (qt, qi(HOSTILE_NAME)),
                                 "ALTER TABLE %s DROP INDEX %s, ALGORITHM=INPLACE, LOCK=NONE" % (qt, qi(HOSTILE_NAME))]
    assert snapshot(db) == before, "the failed proof left something behind"
    assert db.query("SELECT @@foreign_key_checks")[0][0] == 1

    db.execute("DELETE FROM %s WHERE id IN (1001, 1002)" % qt)
    res = run_tasks(ansible, [task(db, "add", diff=True, **fk), task(db, "again", **fk),
                              task(db, "no action is restrict", **merged(fk, on_delete="no action")),
                              task(db, "other definition", **merged(fk, on_delete="cascade"))])
    r = ok(res["add"])
    assert r["changed"] and r["queries"] == [FK_OFF, add + ", ALGORITHM=INPLACE, LOCK=NONE", FK_ON, proof]
    # InnoDB treats RESTRICT and NO ACTION alike (MariaDB may read either back)
    assert r["constraint"]["references"]["columns"] == ["id"] and r["constraint"]["on_delete"] in ("restrict", "no action")
    assert (HOSTILE_NAME, "FOREIGN KEY") in constraints(db, HOSTILE_TABLE)
    assert ok(res["again"])["changed"] is False and res["again"]["queries"] == []
    assert ok(res["no action is restrict"])["changed"] is False
    r = refused(res["other definition"], "another definition", "on_delete", "state: absent")
    with pytest.raises(Exception, match="foreign key constraint fails"):
        db.execute("INSERT INTO %s VALUES (2000, 777, 1, 'new orphan')" % qt)

    res = run_tasks(ansible, [task(db, "drop check", check=True, **merged(fk, state="absent")),
                              task(db, "drop", **merged(fk, state="absent")),
                              task(db, "drop again", **merged(fk, state="absent"))])
    drop = "ALTER TABLE %s DROP FOREIGN KEY %s, ALGORITHM=INPLACE, LOCK=NONE" % (qt, qi(HOSTILE_NAME))
    assert ok(res["drop check"])["queries"] == [drop]
    assert ok(res["drop"])["changed"] and res["drop"]["queries"] == [drop]
    assert ok(res["drop again"])["changed"] is False
    assert (HOSTILE_NAME, "FOREIGN KEY") not in constraints(db, HOSTILE_TABLE)


def test_unique_primary_key_and_check(ansible, mysql_db):
    db = mysql_db
    orders(db, "t")
    db.execute("CREATE TABLE nopk (a int, b int)")
    db.execute("INSERT INTO nopk VALUES (1, 1), (NULL, 2)")
    uq = dict(table="t", name="t_email_key", type="unique", columns=["email"])
    pk = dict(table="nopk", name="PRIMARY", type="primary_key", columns=["a"])
    chk = dict(table="t", name="total_positive", type="check", expression="total>=0")
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "uq check", check=True, **uq),
        task(db, "pk nulls", **pk),
        task(db, "pk name", **merged(pk, name="nopk_pkey")),
        task(db, "chk no rewrite", **chk),
        task(db, "chk injection", **merged(chk, expression="total >= 0) , DROP TABLE t; --")),
        task(db, "chk bad", **merged(chk, expression="no_such_column > 0", allow_rewrite=True)),
    ])
    assert snapshot(db) == before
    assert ok(res["uq check"])["queries"] == [
        "ALTER TABLE `t` ADD CONSTRAINT `t_email_key` UNIQUE (`email`), ALGORITHM=INPLACE, LOCK=NONE"]
    r = refused(res["pk nulls"], "1 row(s) have NULL")
    assert r["null_count"] == 1
    refused(res["pk name"], "name: PRIMARY")
    refused(res["chk no rewrite"], "allow_rewrite: true", "ALGORITHM=COPY")
    refused(res["chk injection"])
    refused(res["chk bad"], "does not accept this CHECK")

    db.execute("UPDATE nopk SET a = 2 WHERE a IS NULL")
    db.execute("UPDATE t SET email = 'dup' WHERE id IN (1, 2)")
    before = snapshot(db)
    res = run_tasks(ansible, [task(db, "uq dup", **uq)])
    refused(res["uq dup"], "duplicate values in (email)", "Nothing was changed")
    assert snapshot(db) == before
    db.execute("UPDATE t SET email = CONCAT('u', id)")
    db.execute("UPDATE t SET total = -1 WHERE id = 3")
    before = snapshot(db)
    res = run_tasks(ansible, [task(db, "chk violated", **merged(chk, allow_rewrite=True))])
    refused(res["chk violated"], "violate the CHECK")
    assert snapshot(db) == before
    db.execute("UPDATE t SET total = 3 WHERE id = 3")

    res = run_tasks(ansible, [
        task(db, "uq", **uq), task(db, "uq again", **uq),
        task(db, "uq other", **merged(uq, columns=["email", "total"])),
        task(db, "pk", **pk), task(db, "pk again", **pk),
        task(db, "chk", **merged(chk, allow_rewrite=True)),
        task(db, "chk same, written otherwise", **merged(chk, expression="`total` >= 0")),
        task(db, "chk other", **merged(chk, expression="total > 0")),
        task(db, "pk drop no rewrite", **merged(pk, state="absent")),
        task(db, "wrong type", **merged(uq, name="total_positive")),
    ])
    assert ok(res["uq"])["changed"] and res["uq"]["constraint"]["columns"] == ["email"]
    assert ok(res["uq again"])["changed"] is False
    refused(res["uq other"], "another definition", "columns")
    assert ok(res["pk"])["queries"] == ["ALTER TABLE `nopk` ADD PRIMARY KEY (`a`), ALGORITHM=INPLACE, LOCK=NONE"]
    assert ok(res["pk again"])["changed"] is False
    r = ok(res["chk"])
    assert r["queries"] == ["ALTER TABLE `t` ADD CONSTRAINT `total_positive` CHECK (total>=0), ALGORITHM=COPY"]
    assert r["constraint"]["expression"] == "`total` >= 0"
    assert ok(res["chk same, written otherwise"])["changed"] is False
    refused(res["chk other"], "another definition", "expression")
    refused(res["pk drop no rewrite"], "allow_rewrite: true")
    refused(res["wrong type"], "exists as a check constraint")
    assert ("PRIMARY", "PRIMARY KEY") in constraints(db, "nopk")
    with pytest.raises(Exception, match="total_positive"):
        db.execute("INSERT INTO t VALUES (5000, 1, -5, 'neg')")

    res = run_tasks(ansible, [task(db, "uq drop", **merged(uq, state="absent")),
                              task(db, "chk drop", **merged(chk, state="absent")),
                              task(db, "pk drop", **merged(pk, state="absent", allow_rewrite=True))])
    assert ok(res["uq drop"])["queries"] == ["ALTER TABLE `t` DROP INDEX `t_email_key`, ALGORITHM=INPLACE, LOCK=NONE"]
    assert ok(res["chk drop"])["queries"] == [
        "ALTER TABLE `t` DROP CONSTRAINT `total_positive`, ALGORITHM=INPLACE, LOCK=NONE"]
    assert ok(res["pk drop"])["queries"] == ["ALTER TABLE `nopk` DROP PRIMARY KEY, ALGORITHM=COPY"]
    assert constraints(db, "t") == [("PRIMARY", "PRIMARY KEY")] and constraints(db, "nopk") == []


def test_lock_timeout_names_the_blocker_and_changes_nothing(ansible, mysql_db):
    db = mysql_db
    orders(db, "t")
    fk = dict(table="t", name="t_customer_fk", type="foreign_key", columns=["customer_id"],
              references=dict(table="customers", columns=["id"]), lock_timeout=1, lock_retries=0)
    holder = db.connect(autocommit=False)
    try:
        cur = holder.cursor()
        cur.execute("SELECT COUNT(*) FROM t")  # an open transaction holds t's metadata lock until it ends
        cur.fetchall()
        before = snapshot(db)
        r = ansible.run(MODULE, dict(db.params, **fk))  # the lock is held until the module has returned
    finally:
        holder.rollback()
        holder.close()
    refused(r, "lock_retries=0")
    assert len(r["attempts"]) == 1 and r["attempts"][0]["blockers"], r["attempts"]
    assert snapshot(db) == before
    assert db.query("SELECT @@foreign_key_checks")[0][0] == 1


def test_foreign_key_under_concurrent_writer(ansible, mysql_db):
    db = mysql_db
    orders(db, "t", rows=20000)
    lock_timeout = 1.0
    writer = Writer(db, "INSERT INTO t (id, customer_id, total, email) SELECT MAX(id) + 1, 7, 1, 'w' FROM t")
    writer.start()
    writer.ready.wait(30)
    try:
        start = writer.completed()
        wait_for(lambda: writer.completed() >= start + 20, None, "the writer running")
        run = ModuleRun(ansible, MODULE, dict(db.params, table="t", name="t_customer_fk", type="foreign_key",
                                              columns=["customer_id"], references=dict(table="customers", columns=["id"]),
                                              lock_timeout=lock_timeout))
        r = run.start_and_wait()
        t0, t1 = run.started_at, run.ended_at
        after = writer.completed()
        wait_for(lambda: writer.completed() >= after + 5 or not writer.is_alive(), None, "the writer after the ALTER")
        alive = writer.is_alive()
    finally:
        queries = writer.finish()
    assert alive, "the writer failed"
    ok(r)
    assert ("t_customer_fk", "FOREIGN KEY") in constraints(db, "t")
    during = [(s, e) for s, e in queries if e >= t0 and s <= t1]
    assert len(during) >= 5, len(during)
    stall = max(e - s for s, e in during)
    assert stall <= lock_timeout + 0.5, "a write stalled %.2f s while the foreign key was added" % stall
