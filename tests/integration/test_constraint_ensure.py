"""dbops.maintenance.constraint_ensure through ansible-playbook against the real PostgreSQL servers.

FOREIGN KEY / CHECK: NOT VALID then VALIDATE (a leftover NOT VALID one is validated); UNIQUE /
PRIMARY KEY: index built CONCURRENTLY then USING INDEX (PRIMARY KEY after the online NOT NULL
sequence). Batched (migration_batch.run_tasks); check mode against a catalog snapshot.
"""

from __future__ import annotations

import pytest

from migration_batch import run_tasks
from test_column_ensure import snapshot

MODULE = "dbops.maintenance.constraint_ensure"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


HOSTILE_TABLE = 'we"ird; DROP TABLE x; --'
HOSTILE_NAME = 'fk "q"; DROP TABLE x; -- \u00e9'


def qi(name):
    return '"' + name.replace('"', '""') + '"'


def merged(base, **over):
    """base with some options replaced (a new dict)."""
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
    return [tuple(r) for r in db.query(
        "SELECT conname, contype, convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass ORDER BY 1", ["public." + qi(table)])]


def test_foreign_key_and_check_lifecycle(ansible, pg_db):
    db = pg_db
    db.execute("CREATE TABLE customers (id int PRIMARY KEY)")
    db.execute("INSERT INTO customers SELECT generate_series(1, 50)")
    db.execute("CREATE TABLE %s (id int PRIMARY KEY, customer_id int, total int)" % qi(HOSTILE_TABLE))
    db.execute("INSERT INTO %s SELECT g, g %% 50 + 1, g FROM generate_series(1, 300) g" % qi(HOSTILE_TABLE))
    fk = dict(table=HOSTILE_TABLE, name=HOSTILE_NAME, type="foreign_key", columns=["customer_id"],
              references=dict(table="customers", columns=["id"]), on_delete="restrict")
    chk = dict(table=HOSTILE_TABLE, name="total_positive", type="check", expression="total >= 0")
    qt = '"public".%s' % qi(HOSTILE_TABLE)
    fk_add = ('ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY ("customer_id") REFERENCES "public"."customers" ("id") '
              'ON DELETE RESTRICT ON UPDATE NO ACTION NOT VALID' % (qt, qi(HOSTILE_NAME)))
    fk_validate = "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (qt, qi(HOSTILE_NAME))
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check fk", check=True, diff=True, **fk),
        task(db, "check chk", check=True, **chk),
        task(db, "injection", **merged(chk, expression="total >= 0); DROP TABLE customers; --")),
        task(db, "comment", **merged(chk, expression="total >= 0 -- x")),
        task(db, "unknown column", **merged(fk, columns=["customer"])),
        task(db, "unknown table", **merged(fk, references=dict(table="customer", columns=["id"]))),
        task(db, "column count", **merged(fk, references=dict(table="customers", columns=["id", "id"]))),
        task(db, "bad action", **merged(fk, on_delete="explode")),
        task(db, "references not a dict", **merged(fk, references="customers")),
        task(db, "sqlite refused", **merged(fk, engine="sqlite", database="/tmp/dbops-none.db")),
        task(db, "allow_rewrite is mysql only", **merged(fk, allow_rewrite=True)),
    ])
    assert snapshot(db) == before, "check mode or a refusal changed the catalog"
    r = ok(res["check fk"])
    assert r["queries"] == [fk_add, fk_validate], r["queries"]
    assert r["diff"]["after"]["references"]["table"] == "customers"
    assert ok(res["check chk"])["queries"] == [
        "ALTER TABLE %s ADD CONSTRAINT \"total_positive\" CHECK (total >= 0) NOT VALID" % qt,
        "ALTER TABLE %s VALIDATE CONSTRAINT \"total_positive\"" % qt]
    refused(res["injection"], "expression")
    refused(res["comment"], "comment")
    refused(res["unknown column"], "Similar names found: customer_id")
    refused(res["unknown table"], "does not exist", "customers")
    refused(res["column count"], "as many columns")
    refused(res["bad action"], "on_delete")
    assert res["references not a dict"]["failed"]
    refused(res["sqlite refused"], "SQLite")
    refused(res["allow_rewrite is mysql only"], "MySQL/MariaDB only")

    # a NOT VALID leftover of an interrupted run: only validated
    db.execute("ALTER TABLE %s ADD CONSTRAINT \"total_positive\" CHECK (total >= 0) NOT VALID" % qi(HOSTILE_TABLE))
    res = run_tasks(ansible, [
        task(db, "fk", diff=True, **fk),
        task(db, "fk again", **fk),
        task(db, "chk resumes", **chk),
        task(db, "chk respelled", **merged(chk, expression="(total>=0)")),
        task(db, "fk other", **merged(fk, on_delete="cascade")),
        task(db, "fk replace", **merged(fk, on_delete="cascade", replace=True)),
        task(db, "violated", **merged(chk, name="total_big", expression="total > 100")),
    ])
    assert ok(res["fk"])["queries"] == [fk_add, fk_validate]
    assert res["fk"]["constraint"]["valid"] is True
    assert ok(res["fk again"])["changed"] is False and res["fk again"]["queries"] == []
    r = ok(res["chk resumes"])
    assert r["queries"] == ["ALTER TABLE %s VALIDATE CONSTRAINT \"total_positive\"" % qt] and r["differences"] == [
        "valid"], r
    assert ok(res["chk respelled"])["changed"] is False
    refused(res["fk other"], "another definition")
    assert res["fk other"]["differences"] == ["on_delete"]
    r = ok(res["fk replace"])
    assert r["queries"][0] == "ALTER TABLE %s DROP CONSTRAINT %s" % (qt, qi(HOSTILE_NAME)), r["queries"]
    v = refused(res["violated"], "violated", "dropped again")
    assert v["queries"][-1] == "ALTER TABLE %s DROP CONSTRAINT \"total_big\"" % qt, v["queries"]
    have = {c[0]: c for c in constraints(db, HOSTILE_TABLE)}
    assert "total_big" not in have
    assert have[HOSTILE_NAME][2] is True and "ON DELETE CASCADE" in have[HOSTILE_NAME][3]
    assert have["total_positive"][2] is True
    res = run_tasks(ansible, [
        task(db, "drop fk", state="absent", table=HOSTILE_TABLE, name=HOSTILE_NAME),
        task(db, "drop fk again", state="absent", table=HOSTILE_TABLE, name=HOSTILE_NAME),
    ])
    assert ok(res["drop fk"])["queries"] == ["ALTER TABLE %s DROP CONSTRAINT %s" % (qt, qi(HOSTILE_NAME))]
    assert ok(res["drop fk again"])["changed"] is False
    assert HOSTILE_NAME not in {c[0] for c in constraints(db, HOSTILE_TABLE)}


def test_unique_and_primary_key_via_concurrent_index(ansible, pg_db):
    db = pg_db
    db.execute("CREATE TABLE t (id int, email text)")
    db.execute("INSERT INTO t SELECT g, 'u' || g FROM generate_series(1, 300) g")
    db.execute("CREATE TABLE d (id int, v int)")
    db.execute("INSERT INTO d VALUES (1, 1), (2, 1), (NULL, 3)")
    uq = dict(table="t", name="t_email_key", type="unique", columns=["email"])
    pk = dict(table="t", name="t_pkey", type="primary_key", columns=["id"])
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check uq", check=True, **uq),
        task(db, "check pk", check=True, **pk),
        task(db, "pk with null", table="d", name="d_pkey", type="primary_key", columns=["id"]),
        task(db, "uq with duplicates", table="d", name="d_v_key", type="unique", columns=["v"]),
    ])
    assert snapshot(db) == before
    assert ok(res["check uq"])["queries"] == [
        'CREATE UNIQUE INDEX CONCURRENTLY "t_email_key" ON "public"."t" ("email")',
        'ALTER TABLE "public"."t" ADD CONSTRAINT "t_email_key" UNIQUE USING INDEX "t_email_key"']
    q = ok(res["check pk"])["queries"]
    assert [s.split(" CONSTRAINT ")[0] for s in q[:2]] == ['ALTER TABLE "public"."t" ADD', 'ALTER TABLE "public"."t" VALIDATE'], q
    assert q[2:] == ['ALTER TABLE "public"."t" ALTER COLUMN "id" SET NOT NULL', q[0].split(" CHECK ")[0].replace(
        "ADD", "DROP"), 'CREATE UNIQUE INDEX CONCURRENTLY "t_pkey" ON "public"."t" ("id")',
        'ALTER TABLE "public"."t" ADD CONSTRAINT "t_pkey" PRIMARY KEY USING INDEX "t_pkey"'], q
    refused(res["pk with null"], "have NULL")
    refused(res["uq with duplicates"], "could not create unique index", "INVALID index the failed build left was dropped")
    assert db.query("SELECT count(*) FROM pg_class WHERE relname = 'd_v_key'")[0][0] == 0
    res = run_tasks(ansible, [
        task(db, "uq", **uq), task(db, "uq again", **uq),
        task(db, "pk", **pk), task(db, "pk again", **pk),
        task(db, "uq other", **merged(uq, columns=["email", "id"])),
        task(db, "drop uq", state="absent", table="t", name="t_email_key"),
    ])
    assert len(ok(res["uq"])["queries"]) == 2 and ok(res["uq again"])["changed"] is False
    assert len(ok(res["pk"])["queries"]) == 6 and ok(res["pk again"])["changed"] is False
    refused(res["uq other"], "another definition")
    assert ok(res["drop uq"])["changed"] is True
    have = {c[0]: c for c in constraints(db, "t")}
    assert have["t_pkey"][1] == "p" and "t_email_key" not in have, have
    assert db.query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'id'")[0][0]
