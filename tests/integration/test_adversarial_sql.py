"""Adversarial: SQL-valued options can never run a second statement or act, through Ansible, on every engine.

column_ensure type/default/using must be exactly one type / one expression (issue 10 item 5); db_verify queries are
read-only by what the statement is (item 6); clear errors, nothing changed, for the crashes of item 15 (a view,
a non-integer baseline count, 100k nested parentheses). Each batch runs in one ansible-playbook (migration_batch);
every case asserts its own result, and the catalog is compared before and after the batch.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

import pytest

from ansible_run import _mark_unsafe
from migration_batch import run_tasks

CE = "dbops.maintenance.column_ensure"
DV = "dbops.maintenance.db_verify"
DEEP = "(" * 100000 + "1" + ")" * 100000


def tasks_of(db, module, cases):
    """cases: [(name, args, check)] -> run_tasks entries with the connection options, strings not templated."""
    return [dict(name=name, module=module, args=_mark_unsafe({**db.params, **args}), check=check)
            for name, args, check in cases]


def catalog(db):
    """Every column of every table and view, and every object, as the catalog has them."""
    if db.engine == "postgresql":
        return db.query(
            "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE n.nspname = 'public' ORDER BY 1, 3")
    if db.engine == "mysql":
        return db.query(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2")
    return db.query("SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2")


def seed(db):
    db.execute("CREATE TABLE t (id int, keep int, v int)")
    db.execute("INSERT INTO t (id, keep, v) VALUES (1, 10, 100), (2, 20, 200)")
    db.execute("CREATE VIEW vw AS SELECT id, v FROM t")


def rows(db):
    return sorted(tuple(r) for r in db.query("SELECT id, keep, v FROM t"))


def refused(res, *words):
    assert res["failed"] is True, res
    assert res.get("changed") is False, res
    for w in words:
        assert w in res["msg"], res["msg"]
    return res["msg"]


HOSTILE_DEFAULTS = ["0, DROP COLUMN IF EXISTS keep", "0; DROP TABLE t", "0 -- ", "0 /* hidden */",
                    "0) ; DROP TABLE t; --", "1 AS x", DEEP]


def _column_ensure_cases(db):
    cases = []
    for i, d in enumerate(HOSTILE_DEFAULTS):
        for check in (True, False):
            cases.append(("default %d %s" % (i, check), dict(table="t", column="c", type="int", default=d), check))
    cases.append(("type check", dict(table="t", column="c", type="int, DROP COLUMN IF EXISTS keep"), True))
    cases.append(("type real", dict(table="t", column="c", type="int, DROP COLUMN IF EXISTS keep"), False))
    cases.append(("view", dict(table="vw", column="c", type="int"), False))
    if db.engine == "postgresql":
        for check in (True, False):
            cases.append(("using %s" % check, dict(table="t", column="v", type="bigint", alter=True, allow_rewrite=True,
                                                   using="v::bigint, DROP COLUMN IF EXISTS keep"), check))
            cases.append(("set default %s" % check, dict(table="t", column="v", type="int", alter=True,
                                                         default="0, DROP COLUMN IF EXISTS keep"), check))
        # one string literal for PostgreSQL (dollar quotes): a harmless default of a text column, added as such
        cases.append(("dollar literal", dict(table="t", column="note", type="text",
                                             default="$$\n; DROP TABLE t; -- $$"), False))
    else:
        for check in (True, False):
            cases.append(("dollar %s" % check, dict(table="t", column="c", type="text",
                                                    default="$$\n; DROP TABLE t; -- $$"), check))
    if db.engine == "mysql":
        for check in (True, False):
            cases.append(("hash comment %s" % check, dict(table="t", column="c", type="int", default="0 # x"), check))
            cases.append(("executable comment %s" % check,
                          dict(table="t", column="c", type="int", default="0 /*!, DROP COLUMN keep */"), check))
    return cases


def _assert_column_ensure(db, results, before):
    for name, res in results.items():
        if name == "dollar literal":
            continue
        if name == "view":
            refused(res, "is a view, not a table", "Nothing was changed")
            continue
        refused(res, "Nothing was run")
        if name.startswith("type"):
            assert "syntax" in res["msg"]
    assert "nested too deeply" in results["default %d False" % (len(HOSTILE_DEFAULTS) - 1)]["msg"]
    after = catalog(db)
    if db.engine == "postgresql":
        res = results["dollar literal"]
        assert res["failed"] is False and res["changed"] is True, res
        assert res["column"]["default"] == "'\n; DROP TABLE t; -- '::text"
        after = [r for r in after if r[2] != "note"]
    assert after == before
    assert rows(db) == [(1, 10, 100), (2, 20, 200)]


def test_column_ensure_sql_options_are_one_expression(ansible, db):
    seed(db)
    before = catalog(db)
    results = run_tasks(ansible, tasks_of(db, CE, _column_ensure_cases(db)))
    _assert_column_ensure(db, results, before)


def test_column_ensure_sql_options_are_one_expression_sqlite(ansible, sqlite_db):
    seed(sqlite_db)
    before = catalog(sqlite_db)
    results = run_tasks(ansible, tasks_of(sqlite_db, CE, _column_ensure_cases(sqlite_db)))
    _assert_column_ensure(sqlite_db, results, before)
