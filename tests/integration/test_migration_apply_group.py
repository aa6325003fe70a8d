"""migration_apply's group commit on SQLite (migrations/group.py) and its one round trip per migration on
PostgreSQL (engines/scripts.py), through Ansible.

SQLite: consecutive transactional migrations run in one transaction, a savepoint each, and commit together;
a migration that cannot be grouped (a PRAGMA) runs alone between two groups; a migration failing inside a
group leaves the ones before it committed, itself rolled back and recorded as the tool records it, the rest
not run; another writer holding the write lock, or a reader holding the file at the commit, for the whole
module run (released only after the module returned): the run fails on the lock with nothing applied and
nothing half-done, and the same run succeeds once the lock is gone. Check mode: the group's exact statements,
nothing changed. PostgreSQL: a script whose last line is a comment still commits with its history row, and a
failure names the failing statement of the one query, rolled back whole.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from migration_batch import run_tasks
from test_migration_apply import make_db

APPLY = "dbops.maintenance.migration_apply"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    with ansible.session() as session:
        yield session


def dbmate_file(path, version, up, down=True):
    path.mkdir(parents=True, exist_ok=True)
    (path / ("%s_m.sql" % version)).write_text("-- migrate:up\n" + up + ("\n\n-- migrate:down\nSELECT 1;\n" if down else ""))


def goose_file(path, n, up):
    path.mkdir(parents=True, exist_ok=True)
    (path / ("%05d_m%d.sql" % (n, n))).write_text("-- +goose Up\n%s\n-- +goose Down\nSELECT 1;\n" % up)


def ok(res, name):
    r = res[name]
    assert not r["failed"], "%s failed: %s" % (name, json.dumps(r, indent=1, default=str)[:4000])
    return r


def sqlite_tables(path):
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()


def run_holding(ansible, db, statements, args):
    """migration_apply's result, run while another connection holds what `statements` took (released only after
    the module returned)."""
    holder = sqlite3.connect(db.name, isolation_level=None)
    try:
        for statement in statements:
            holder.execute(statement).fetchall()
        return run_tasks(ansible, [dict(name="held", module=APPLY, args=args)])["held"]
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


def segments(queries):
    """The queries cut at each group's COMMIT: [(grouped?, [statements])]."""
    out, cur, grouped = [], [], False
    for q in queries:
        if q == "BEGIN IMMEDIATE":
            if cur:
                out.append((False, cur))
            cur, grouped = [], True
        elif q == "COMMIT" and grouped:
            out.append((True, cur))
            cur, grouped = [], False
        elif not q.startswith("PRAGMA busy_timeout"):
            cur.append(q)
    if cur:
        out.append((grouped, cur))
    return out


def test_sqlite_group_commit(ansible, request, tmp_path):  # pylint: disable=too-many-locals,too-many-statements
    # five dbmate migrations; the third holds a PRAGMA, so it runs alone between two groups
    d1 = make_db(request, "sqlite", tmp_path, "group")
    p1 = tmp_path / "group"
    for n in (1, 2, 4, 5):
        dbmate_file(p1, "2024010100000%d" % n, "CREATE TABLE t%d (id INT PRIMARY KEY);\nINSERT INTO t%d VALUES (%d);"
                    % (n, n, n))
    dbmate_file(p1, "20240101000003", "CREATE TABLE t3 (id INT);\n-- a comment first\nPRAGMA user_version = 7;")
    a1 = dict(d1.params, tool="dbmate", migrations_path=str(p1), create_table=True, lint=False)
    # goose, four migrations: the third fails on its second statement
    d2 = make_db(request, "sqlite", tmp_path, "fault")
    p2 = tmp_path / "fault"
    for n, up in ((1, "CREATE TABLE f1 (id int);"), (2, "CREATE TABLE f2 (id int);"),
                  (3, "CREATE TABLE f3 (id int);\nINSERT INTO nowhere VALUES (1);"), (4, "CREATE TABLE f4 (id int);")):
        goose_file(p2, n, up)
    a2 = dict(d2.params, tool="goose", migrations_path=str(p2), create_table=True)
    # held locks: the tables exist and the history is empty; lock_timeout short, one retry
    held = {}
    for label in ("writer", "reader"):
        db = make_db(request, "sqlite", tmp_path, label)
        p = tmp_path / label
        for n in (1, 2, 3):
            dbmate_file(p, "2024010100000%d" % n, "CREATE TABLE h%d (id int);" % n)
        held[label] = (db, dict(db.params, tool="dbmate", migrations_path=str(p), create_table=True, lint=False,
                                lock_timeout=0.2, lock_retries=1))
        conn = sqlite3.connect(db.name)
        conn.execute("CREATE TABLE app (id int)")
        conn.execute("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
        conn.close()

    res = run_tasks(ansible, [
        dict(name="group:check", module=APPLY, args=a1, check=True),
        dict(name="group", module=APPLY, args=a1),
        dict(name="group:again", module=APPLY, args=a1),
        dict(name="fault", module=APPLY, args=a2),
    ])

    # --- check mode: the plan in savepoints, the group statements in queries, nothing changed
    r = ok(res, "group:check")
    assert r["changed"] is True
    hows = {p["name"]: p["how"] for p in r["plan"]}
    assert [("savepoint" in hows["2024010100000%d" % n]) for n in (1, 2, 3, 4, 5)] == [True, True, False, True, True]
    grouped = [p for p in r["plan"] if "savepoint" in p["how"]]
    assert all(p["statements"][0] == 'SAVEPOINT "dbops_migration"' and p["statements"][-1] == 'RELEASE "dbops_migration"'
               for p in grouped), grouped
    assert [g for g, _s in segments(r["queries"][1:])] == [True, False, True], r["queries"]
    # --- the run: exactly those statements, two groups and the PRAGMA migration alone
    r = ok(res, "group")
    assert [a["name"] for a in r["applied"]] == ["2024010100000%d" % n for n in (1, 2, 3, 4, 5)]
    segs = segments(r["queries"][1:])  # [0] is the history table's CREATE
    assert [g for g, _s in segs] == [True, False, True], r["queries"]
    assert sum(1 for q in segs[0][1] if q.startswith("CREATE TABLE t")) == 2
    assert any("PRAGMA user_version" in q for q in segs[1][1]) and not any(q.startswith("SAVEPOINT") for q in segs[1][1])
    assert r["queries"].count("BEGIN IMMEDIATE") == 2 and r["queries"].count("COMMIT") == 2
    assert r["status"]["pending"] == [] and r["status"]["applied"] == ["2024010100000%d" % n for n in (1, 2, 3, 4, 5)]
    assert d1.query("PRAGMA user_version") == [(7,)]
    assert d1.query("SELECT count(*) FROM t5") == [(1,)]
    assert d1.query("SELECT version FROM schema_migrations ORDER BY version") == [
        ("2024010100000%d" % n,) for n in (1, 2, 3, 4, 5)]
    r = ok(res, "group:again")
    assert r["changed"] is False and r["queries"] == []
    # --- a failure inside a group: the ones before it committed, it rolled back and run once more alone, the rest not
    r = res["fault"]
    assert r["failed"] and r["failed_migration"]["name"] == "3" and "nowhere" in r["failed_migration"]["error"], r
    assert [a["name"] for a in r["applied"]] == ["1", "2"]
    assert r["failed_migration"]["rolled_back"] is True
    # queries lists what ran and stayed: f1 and f2 in one group, nothing of f3 (rolled back), nothing of f4
    created = [q for q in r["queries"] if q.startswith("CREATE TABLE f")]
    assert created == ["CREATE TABLE f1 (id int);", "CREATE TABLE f2 (id int);"], r["queries"]
    assert r["queries"].count("BEGIN IMMEDIATE") == 1 and r["queries"].count("COMMIT") == 1, r["queries"]
    tabs = sqlite_tables(d2.name)
    assert "f1" in tabs and "f2" in tabs and "f3" not in tabs and "f4" not in tabs, tabs
    assert d2.query("SELECT version_id FROM goose_db_version WHERE version_id > 0 ORDER BY version_id") == [(1,), (2,)]

    # --- another writer holds the write lock for the whole module run
    db, args = held["writer"]
    r = run_holding(ansible, db, ["BEGIN IMMEDIATE", "INSERT INTO app VALUES (1)"], args)
    assert r["failed"] and r["applied"] == [] and r["failed_migration"]["lock_timeout"] is True, r
    assert "lock_timeout=0.2s" in r["msg"] and "lock_retries=1" in r["msg"] and ".." not in r["msg"], r["msg"]
    assert len(r["attempts"]) == 2, r["attempts"]  # the group did not wait: one try and one retry, as alone
    assert sqlite_tables(db.name) == ["app", "schema_migrations"] and db.query("SELECT * FROM schema_migrations") == []

    # --- a reader holds the file (SHARED) for the whole run: the group's COMMIT cannot happen
    db, args = held["reader"]
    r = run_holding(ansible, db, ["BEGIN", "SELECT count(*) FROM app"], args)
    assert r["failed"] and r["applied"] == [] and r["failed_migration"]["lock_timeout"] is True, r
    assert r["queries"] == [], r["queries"]  # the group's COMMIT failed: rolled back whole, nothing stayed
    assert sqlite_tables(db.name) == ["app", "schema_migrations"] and db.query("SELECT * FROM schema_migrations") == []

    # --- both locks gone: the same runs apply everything
    res = run_tasks(ansible, [dict(name="writer:after", module=APPLY, args=held["writer"][1]),
                              dict(name="reader:after", module=APPLY, args=held["reader"][1])])
    for label in ("writer", "reader"):
        r = ok(res, label + ":after")
        assert [a["name"] for a in r["applied"]] == ["2024010100000%d" % n for n in (1, 2, 3)]
        assert sqlite_tables(held[label][0].name) == ["app", "h1", "h2", "h3", "schema_migrations"]


def test_postgresql_one_round_trip(ansible, request, tmp_path):
    db = make_db(request, "pg", tmp_path, "trip")
    p = tmp_path / "trip"
    # the up section ends the file on a comment line without a newline: the history row and COMMIT still follow
    dbmate_file(p, "20240101000001", "CREATE TABLE c1 (id int); -- the last line, a comment", down=False)
    dbmate_file(p, "20240101000002", "CREATE TABLE c2 (id int);\nSELECT 1/0;")
    args = dict(db.params, tool="dbmate", migrations_path=str(p), create_table=True)
    res = run_tasks(ansible, [dict(name="trip", module=APPLY, args=args)])
    r = res["trip"]
    assert r["failed"] and [a["name"] for a in r["applied"]] == ["20240101000001"], r
    fm = r["failed_migration"]
    assert fm["name"] == "20240101000002" and "division by zero" in fm["error"] and fm["rolled_back"] is True, fm
    assert "1/0" in (fm["statement"] or ""), fm
    assert db.query("SELECT version FROM schema_migrations") == [("20240101000001",)]
    assert db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'c%%' "
                    "ORDER BY 1") == [("c1",)]
