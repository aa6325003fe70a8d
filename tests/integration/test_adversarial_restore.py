"""Adversarial db_restore: every failure at every stage leaves the target exactly as it was (issue 10 items 1, 3,
7 and the SQLite parts of 15). Each case runs against a target that differs from the backup, so a restore that
went through would show; after the cases, the target's rows, content, objects and properties are compared with
what they were, and the catalog must hold no side or replaced database.

Faults are real where they can be (an archive with a failing statement, a truncated archive whose manifest was
fixed to match, hostile manifests); the failure between the two renames and the other in-swap stages use the
test-only DBOPS_TEST_FAIL_AT hook of the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from test_db_backup import fingerprint, mountpoint, seed  # noqa: F401  pylint: disable=unused-import
from test_db_restore import (  # noqa: F401  pylint: disable=unused-import
    RESTORE, batch, databases_like, like_escape, maria_db, maria_objects, maria_seed_objects, pg16_db, pg_dress,
    pg_props, take_backup,
)

SECRET = "TOPSECRET-first-line-of-a-root-only-file"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def variant(src_manifest, where, change=None, truncate=False):
    """A copy of a backup and its manifest in directory `where`, the manifest changed by change(m); with truncate
    the backup is cut in half and the manifest's sha256/size are fixed to match (so only the restore can tell)."""
    os.makedirs(where, exist_ok=True)
    m = json.load(open(src_manifest))
    src = os.path.join(os.path.dirname(src_manifest), m["file"])
    dst = os.path.join(where, m["file"])
    shutil.copyfile(src, dst)
    if truncate:
        with open(dst, "r+b") as f:
            f.truncate(os.path.getsize(dst) // 2)
        m["sha256"] = hashlib.sha256(open(dst, "rb").read()).hexdigest()
        m["size"] = os.path.getsize(dst)
    if change:
        change(m)
    path = dst + ".manifest.json"
    with open(path, "w") as f:
        json.dump(m, f)
    return path


def no_traceback(r):
    assert "Traceback" not in r["msg"] and not r["msg"].startswith("Task failed: Module failed: ("), r


def hostile_manifests(base, bk, tmp_path):
    """Manifest cases every engine must refuse before anything is read or touched."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    os.chmod(tmp_path / "secret", 0o400)
    return {
        "unknown compression": (variant(bk, base / "comp", lambda m: m.update(compression="brotli")), "compression"),
        "file ../secret": (variant(bk, base / "dotdot", lambda m: m.update(file="../../secret")), "file"),
        "sha256 not hex": (variant(bk, base / "sha", lambda m: m.update(sha256="zz" * 32)), "sha256"),
        "size not int": (variant(bk, base / "size", lambda m: m.update(size="12")), "size"),
        "tables shape": (variant(bk, base / "tables", lambda m: m.update(tables=["x"])), "tables"),
    }


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

def test_pg_every_failing_stage_leaves_the_target_as_it_was(ansible, pg16_db, tmp_path):
    db, srv = pg16_db, pg16_db.server
    role, gone = "dbops_owner_" + db.name[-10:], "dbops_gone_" + db.name[-10:]
    tables = seed(db, rows=100)
    pg_dress(db, role)
    try:
        good = take_backup(ansible, db, tmp_path / "good")["manifest_path"]
        # an archive with a statement that fails on restore: ALTER TABLE ... OWNER TO a role that is gone
        srv.execute(None, 'DROP ROLE IF EXISTS "%s"' % gone)
        srv.execute(None, 'CREATE ROLE "%s"' % gone)
        db.execute('CREATE TABLE doomed (id int)')
        db.execute('ALTER TABLE doomed OWNER TO "%s"' % gone)
        failing = take_backup(ansible, db, tmp_path / "failing")["manifest_path"]
        db.execute("DROP TABLE doomed")
        srv.execute(None, 'DROP ROLE "%s"' % gone)
        # the target moves on after the backups: a restore that went through would show
        db.execute("DELETE FROM items WHERE id > 50")
        db.execute("CREATE VIEW since AS SELECT 1 AS x")
        before, props = fingerprint(db, tables), pg_props(srv, db.name)

        base = tmp_path / "v"
        cases = {
            "failing statement": (failing, "does not exist"),
            "truncated archive": (variant(good, base / "trunc", truncate=True), "side database"),
            "count mismatch": (variant(good, base / "counts", lambda m: m["row_counts"].update(
                {k: v + 1 for k, v in m["row_counts"].items()})), "row counts"),
            "encoding injection": (variant(good, base / "enc", lambda m: m["database_facts"].update(
                encoding="UTF8' TEMPLATE template1 --")), "database_facts.encoding"),
            "unknown encoding": (variant(good, base / "enc2", lambda m: m["database_facts"].update(
                encoding="NOPE9")), "not an encoding"),
        }
        cases.update(hostile_manifests(base, good, tmp_path))
        stages = {"fail at %s" % s: (good, "DBOPS_TEST_FAIL_AT=%s" % s)
                  for s in ("side_restored", "checked", "properties", "between_renames")}
        tasks = [dict(name=n, module=RESTORE, args=dict(srv.params(), database=db.name, backup=path, replace=True))
                 for n, (path, _w) in cases.items()]
        tasks += [dict(name=n, module=RESTORE, args=dict(srv.params(), database=db.name, backup=path, replace=True),
                       env=dict(DBOPS_TEST_FAIL_AT=n.split()[-1])) for n, (path, _w) in stages.items()]
        res = batch(ansible, tasks)
        for name, (_path, words) in list(cases.items()) + list(stages.items()):
            r = res[name]
            assert r["failed"] and not r["changed"], (name, r)
            assert words in r["msg"] + json.dumps(r.get("processes")), (name, r["msg"], r.get("processes"))
            no_traceback(r)
        assert "Nothing was replaced" in res["fail at between_renames"]["msg"]
        assert "renamed %s" % db.name in res["fail at between_renames"]["msg"] or "back to" in \
            res["fail at between_renames"]["msg"]
        assert SECRET not in res["_stdout"] and SECRET not in res["_stderr"]
        # the target is exactly as it was: rows, content, objects, database-level properties
        assert fingerprint(db, tables) == before
        assert db.query("SELECT count(*) FROM pg_views WHERE viewname = 'since'") == [(1,)]
        assert pg_props(srv, db.name) == props
        assert databases_like(srv, "dbops\\_restore\\_" + like_escape(db.name) + "%") == []
        assert databases_like(srv, like_escape(db.name) + "\\_dbops\\_replaced\\_%") == []
    finally:
        srv.execute(None, 'DROP ROLE IF EXISTS "%s"' % gone)
        for name in databases_like(srv, like_escape(db.name) + "%"):
            srv.drop_database(name)
        srv.execute(None, 'DROP ROLE IF EXISTS "%s"' % role)


def test_pg_restore_onto_a_database_with_only_a_schema_or_function_needs_replace(ansible, pg16_db, tmp_path):
    db, srv = pg16_db, pg16_db.server
    seed(db, rows=5)
    bk = take_backup(ansible, db, tmp_path / "bk")
    made = {db.name + "_s": "CREATE SCHEMA app", db.name + "_f": "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            db.name + "_t": "CREATE TYPE mood AS ENUM ('ok')"}
    try:
        for target, ddl in made.items():
            srv.create_database(target)
            srv.execute(target, ddl)
        res = batch(ansible, [dict(name=t, module=RESTORE, args=dict(srv.params(), database=t, backup=bk["path"]))
                              for t in made])
        for target in made:
            assert res[target]["failed"] and "not empty" in res[target]["msg"], res[target]
            assert srv.query(target, "SELECT count(*) FROM pg_class WHERE relname = 'items'") == [(0,)]
    finally:
        for target in made:
            srv.drop_database(target)


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------

def trigger_defs(srv, schema):
    return srv.query(None, "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
                           "WHERE TRIGGER_SCHEMA = %s ORDER BY 1", [schema])


def test_mariadb_1000_rows_survive_every_failing_restore(ansible, maria_db, tmp_path):
    db, srv = maria_db, maria_db.server
    tables = seed(db, rows=1000)
    maria_seed_objects(db)
    good = take_backup(ansible, db, tmp_path / "good")["manifest_path"]
    db.execute("DELETE FROM `Orders` WHERE id > 990")
    db.execute("CREATE VIEW since AS SELECT 1 AS x")
    before, objects, triggers = fingerprint(db, tables), maria_objects(srv, db.name), trigger_defs(srv, db.name)
    assert sum(n for n, _h in before.values()) == 1990
    base = tmp_path / "v"
    cases = {
        "truncated dump": (variant(good, base / "trunc", truncate=True), "side database"),
        "count mismatch": (variant(good, base / "counts", lambda m: m["row_counts"].update(
            {k: v - 1 for k, v in m["row_counts"].items()})), "row counts"),
        "charset injection": (variant(good, base / "cs", lambda m: m["database_facts"].update(
            charset="utf8mb4 COMMENT 'x'")), "database_facts.charset"),
        "unknown charset": (variant(good, base / "cs2", lambda m: m["database_facts"].update(
            charset="klingon")), "not a character set"),
        "collation injection": (variant(good, base / "co", lambda m: m["database_facts"].update(
            collation="utf8mb4_bin; DROP DATABASE mysql")), "database_facts.collation"),
    }
    cases.update(hostile_manifests(base, good, tmp_path))
    stages = {"fail at %s" % s: (good, "DBOPS_TEST_FAIL_AT=%s" % s)
              for s in ("side_restored", "checked", "between_renames", "swapped")}
    tasks = [dict(name=n, module=RESTORE, args=dict(srv.params(), database=db.name, backup=path, replace=True))
             for n, (path, _w) in cases.items()]
    tasks += [dict(name=n, module=RESTORE, args=dict(srv.params(), database=db.name, backup=path, replace=True),
                   env=dict(DBOPS_TEST_FAIL_AT=n.split()[-1])) for n, (path, _w) in stages.items()]
    res = batch(ansible, tasks)
    for name, (_path, words) in list(cases.items()) + list(stages.items()):
        r = res[name]
        assert r["failed"] and r["changed"] is False, (name, r)
        assert words in r["msg"], (name, r["msg"])
        no_traceback(r)
    assert SECRET not in res["_stdout"] and SECRET not in res["_stderr"]
    assert fingerprint(db, tables) == before
    assert maria_objects(srv, db.name) == objects and trigger_defs(srv, db.name) == triggers
    assert databases_like(srv, "dbops\\_restore\\_" + like_escape(db.name) + "%") == []
    assert databases_like(srv, like_escape(db.name) + "\\_dbops\\_replaced\\_%") == []


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------

def file_state(path):
    return (open(path, "rb").read(), os.stat(path).st_mode, os.stat(path).st_ino)


def test_sqlite_targets_that_must_be_refused_and_failing_stages(ansible, sqlite_db, tmp_path):
    tables = seed(sqlite_db, rows=40)
    good = take_backup(ansible, sqlite_db, tmp_path / "good", compression="gzip")["manifest_path"]
    sqlite_db.execute("DELETE FROM items WHERE id > 3")
    before = file_state(sqlite_db.name)
    work = tmp_path / "targets"
    work.mkdir()
    only_view = work / "only_view.sqlite3"
    SqliteDB = type(sqlite_db)
    SqliteDB(only_view).execute("CREATE VIEW v AS SELECT 1 AS x")
    text = work / "notes.txt"
    text.write_text("not a database\n")
    dangling = work / "dangling.sqlite3"
    os.symlink(str(work / "nowhere.sqlite3"), str(dangling))
    missing = work / "no_such_dir" / "db.sqlite3"
    targets = {"only a view": (only_view, "not empty"), "text file": (text, "not a SQLite database"),
               "dangling symlink": (dangling, "does not exist"), "missing directory": (missing, "does not exist")}
    states = {n: file_state(p) for n, (p, _w) in targets.items() if os.path.exists(p)}
    base = tmp_path / "v"
    cases = {"truncated backup": (variant(good, base / "trunc", truncate=True), "Decompressing")}
    cases.update(hostile_manifests(base, good, tmp_path))
    tasks = [dict(name=n, module=RESTORE, args=dict(engine="sqlite", database=str(p), backup=good))
             for n, (p, _w) in targets.items()]
    tasks += [dict(name=n, module=RESTORE, args=dict(engine="sqlite", database=sqlite_db.name, backup=path,
                                                     replace=True)) for n, (path, _w) in cases.items()]
    stages = ("side_restored", "checked", "between_renames")
    replace = dict(engine="sqlite", database=sqlite_db.name, backup=good, replace=True)
    tasks += [dict(name="fail at " + s, module=RESTORE, args=replace, env=dict(DBOPS_TEST_FAIL_AT=s)) for s in stages]
    res = batch(ansible, tasks)
    for name, (_p, words) in list(targets.items()) + list(cases.items()):
        r = res[name]
        assert r["failed"] and not r["changed"] and words in r["msg"], (name, r)
        no_traceback(r)
    for s in stages:
        r = res["fail at " + s]
        assert r["failed"] and "DBOPS_TEST_FAIL_AT=%s" % s in r["msg"] and "Nothing was replaced" in r["msg"], r
    assert SECRET not in res["_stdout"] and SECRET not in res["_stderr"]
    assert file_state(sqlite_db.name) == before
    assert {n: file_state(p) for n, (p, _w) in targets.items() if os.path.exists(p)} == states
    assert os.path.islink(dangling) and not os.path.exists(dangling) and not os.path.exists(missing.parent)
    left = [n for n in os.listdir(os.path.dirname(sqlite_db.name)) if n.startswith(".dbops-") or "_dbops_replaced_" in n]
    assert left == []
    assert fingerprint(sqlite_db, tables)["items"][0] == 3


def test_sqlite_side_copy_that_would_not_fit_is_refused_before_anything(ansible, sqlite_db, tmp_path, mountpoint):
    sqlite_db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
    sqlite_db.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300) "
                      "INSERT INTO blobs SELECT i, randomblob(1000) FROM s")
    good = take_backup(ansible, sqlite_db, tmp_path / "good", compression="none")
    assert good["size"] > 300000
    small = mountpoint("size=512k")
    target = small / "app.sqlite3"
    # the side copy (~300 KB) would fit in what is free (~360 KB), but not with the kept copy of the target and
    # the journal of the write into it (~150 KB each)
    conn = type(sqlite_db)(target).connect()
    conn.execute("CREATE TABLE keep (id INTEGER PRIMARY KEY, b BLOB)")
    conn.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 140) "
                 "INSERT INTO keep SELECT i, randomblob(1000) FROM s")
    conn.close()
    before = file_state(target)
    r = ansible.run(RESTORE, dict(engine="sqlite", database=str(target), backup=good["path"], replace=True))
    assert r.failed and "Not enough free space" in r["msg"] and str(small) in r["msg"], r
    assert file_state(target) == before and sorted(os.listdir(small)) == ["app.sqlite3"]
