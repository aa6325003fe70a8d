"""db_clone through ansible-playbook: state=absent drops only what db_clone created (issue 10 item 2), whatever
scratch_prefix says; absent and schema_only are checked in the catalog (issue 19); a SQLite clone keeps the
source's mode."""

from __future__ import annotations

import os
import stat

import pytest

from test_db_backup import engine_db, fingerprint, seed  # noqa: F401  pylint: disable=unused-import
from test_db_restore import CLONE, batch, databases_like, like_escape, maria_db, pg16_db  # noqa: F401  pylint: disable=unused-import


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def table_rows(srv, database):
    """{table: rows} of a database, read from the database itself."""
    if srv.engine == "postgresql":
        names = [r[0] for r in srv.query(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                                   "ORDER BY 1")]
        return {n: srv.query(database, 'SELECT count(*) FROM "%s"' % n)[0][0] for n in names}
    names = [r[0] for r in srv.query(None, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                                           "AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1", [database])]
    return {n: srv.query(database, "SELECT COUNT(*) FROM `%s`" % n)[0][0] for n in names}


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_clone_absent_drops_only_what_db_clone_created(ansible, engine, request):
    db = request.getfixturevalue("pg16_db" if engine == "postgresql" else "maria_db")
    srv = db.server
    tables = seed(db, rows=25)
    clone = "dbops_scratch_" + db.name
    # a real database that merely starts with the prefix, and a prefix that matches the real database
    real = "dbops_scratch_real_" + db.name[-10:]
    srv.create_database(real)
    try:
        srv.execute(real, "CREATE TABLE keep (id int)")
        res = batch(ansible, output=False, tasks=[
            dict(name="create", module=CLONE, args=dict(db.params, name=clone)),
            dict(name="real with default prefix", module=CLONE, args=dict(db.params, name=real, state="absent")),
            dict(name="prefix matching the source", module=CLONE,
                 args=dict(db.params, name=db.name, state="absent", scratch_prefix="dbops_t_")),
            dict(name="prefix matching another", module=CLONE,
                 args=dict(db.params, database=clone, name=real, state="absent", scratch_prefix="dbops_")),
            dict(name="absent", module=CLONE, args=dict(db.params, name=clone, state="absent")),
        ])
        assert res["create"]["changed"] and not res["create"]["failed"], res["create"].get("msg")
        for name in ("real with default prefix", "prefix matching another"):
            r = res[name]
            assert r["failed"] and "not created by db_clone" in r["msg"], (name, r)
        r = res["prefix matching the source"]
        assert r["failed"], r
        # still there, in the catalog, with its table
        assert databases_like(srv, like_escape(real)) == [real]
        assert databases_like(srv, like_escape(db.name)) == [db.name]
        assert table_rows(srv, real) == {"keep": 0}
        assert fingerprint(db, tables)["items"][0] == 25
        # state=absent removed the clone from the catalog
        assert res["absent"]["changed"] and not res["absent"]["failed"]
        assert databases_like(srv, like_escape(clone)) == []
        # schema_only: the clone's tables exist (a non-empty list), with zero rows, read from the database
        schema = ansible.run(CLONE, dict(db.params, name=clone, schema_only=True), expect_failure=False)
        assert schema.changed
        rows = table_rows(srv, clone)
        assert sorted(rows) == sorted(tables) and set(rows.values()) == {0}, rows
        assert sorted(t["name"].split(".")[-1] for t in schema["tables"]) == sorted(tables)
    finally:
        srv.drop_database(real)
        srv.drop_database(clone)


def test_sqlite_clone_marker_mode_and_dangling_symlink(ansible, sqlite_db, tmp_path):
    seed(sqlite_db, rows=10)
    os.chmod(sqlite_db.name, 0o600)
    clone = tmp_path / "dbops_scratch_copy.sqlite3"
    planted = tmp_path / "dbops_scratch_real.sqlite3"
    type(sqlite_db)(planted).execute("CREATE TABLE keep (id int)")
    dangling = tmp_path / "dbops_scratch_dangling.sqlite3"
    os.symlink(str(tmp_path / "nowhere.sqlite3"), str(dangling))
    res = batch(ansible, output=False, tasks=[
        dict(name="create", module=CLONE, args=dict(sqlite_db.params, name=str(clone))),
        dict(name="planted", module=CLONE, args=dict(sqlite_db.params, name=str(planted), state="absent")),
        dict(name="dangling", module=CLONE, args=dict(sqlite_db.params, name=str(dangling))),
        dict(name="dangling absent", module=CLONE, args=dict(sqlite_db.params, name=str(dangling), state="absent")),
    ])
    assert res["create"]["changed"] and not res["create"]["failed"], res["create"]
    assert stat.S_IMODE(os.stat(clone).st_mode) == 0o600
    assert os.stat(clone).st_uid == os.stat(sqlite_db.name).st_uid
    assert res["planted"]["failed"] and "not created by db_clone" in res["planted"]["msg"]
    assert planted.exists() and type(sqlite_db)(planted).query("SELECT count(*) FROM keep") == [(0,)]
    for name in ("dangling", "dangling absent"):
        assert res[name]["failed"] and "symbolic link" in res[name]["msg"], res[name]
    assert os.path.islink(dangling) and not os.path.exists(tmp_path / "nowhere.sqlite3")
    gone = ansible.run(CLONE, dict(sqlite_db.params, name=str(clone), state="absent"), expect_failure=False)
    assert gone.changed and not clone.exists() and not os.path.exists(str(clone) + ".dbops.json")
    # a file put in place of the clone (another inode) is not the clone any more
    ansible.run(CLONE, dict(sqlite_db.params, name=str(clone)), expect_failure=False)
    os.replace(str(planted), str(clone))
    swapped = ansible.run(CLONE, dict(sqlite_db.params, name=str(clone), state="absent"))
    assert swapped.failed and clone.exists()


# --------------------------------------------------------------------------
# present / absent / schema_only, the prefix guard, SQLite (from test_backup.py)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_clone_present_absent_and_prefix_guard(ansible, engine, engine_db):
    db = engine_db
    tables = seed(db, rows=30)
    name = "dbops_scratch_" + db.name
    srv = db.server
    try:
        r = ansible.run(CLONE, dict(db.params, name=name), expect_failure=False)
        assert r.changed and fingerprint(db, tables, database=name) == fingerprint(db, tables)
        assert not ansible.run(CLONE, dict(db.params, name=name), expect_failure=False).changed
        refused = ansible.run(CLONE, dict(db.params, name=db.name + "_copy", state="absent"))
        assert refused.failed and "scratch prefix" in refused["msg"]
        gone = ansible.run(CLONE, dict(db.params, name=name, state="absent"), expect_failure=False)
        assert gone.changed
        schema = ansible.run(CLONE, dict(db.params, name=name, schema_only=True), expect_failure=False)
        assert schema.changed and all(t["rows"] == 0 for t in schema["tables"])
    finally:
        srv.drop_database(name)


def test_clone_sqlite(ansible, sqlite_db, tmp_path):
    seed(sqlite_db, rows=10)
    target = tmp_path / "dbops_scratch_copy.sqlite3"
    r = ansible.run(CLONE, dict(sqlite_db.params, name=str(target)), expect_failure=False)
    assert r.changed and target.exists()
    bad = ansible.run(CLONE, dict(sqlite_db.params, name=sqlite_db.name, state="absent"))
    assert bad.failed and os.path.exists(sqlite_db.name)
    assert ansible.run(CLONE, dict(sqlite_db.params, name=str(target), state="absent"), expect_failure=False).changed
    assert not target.exists()
