"""db_restore through ansible-playbook against the real servers: the side database and the swap succeed, carry
the target's properties over, keep the replaced copy (marked as ours) and check mode touches nothing.

The helpers here (batch, pg_props, databases_like, ...) are shared with test_db_clone.py and
test_adversarial_restore.py.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from migration_batch import run_tasks
from test_db_backup import fingerprint, make_tool_dir, one_pg_db, seed  # noqa: F401  pylint: disable=unused-import

BACKUP = "dbops.maintenance.db_backup"
RESTORE = "dbops.maintenance.db_restore"
CLONE = "dbops.maintenance.db_clone"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def batch(ansible, tasks, output=True):
    """Many module tasks in one ansible-playbook (migration_batch.run_tasks): tasks are {"name", "module", "args",
    "check", "env"}; returns {name: result} and (output=True) the run's _stdout/_stderr. Every task has
    ignore_errors. output=False: in this file's PlaybookSession (no playbook start)."""
    return run_tasks(ansible, tasks, output=output)


def databases_like(server, pattern):
    """Names in the server's catalog matching a LIKE pattern."""
    if server.engine == "postgresql":
        rows = server.query(None, "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", [pattern])
    else:
        rows = server.query(None, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
                                  "ORDER BY 1", [pattern])
    return [r[0] for r in rows]


def like_escape(name):
    return name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def drop_all_like(server, pattern):
    for name in databases_like(server, pattern):
        server.drop_database(name)


def pg_props(server, name):
    """The database-level properties the swap must carry over."""
    row = server.query(None, "SELECT r.rolname, d.datconnlimit, d.datallowconn, shobj_description(d.oid, 'pg_database') "
                             "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s", [name])[0]
    acl = server.query(None, "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
                             "a.privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s "
                             "ORDER BY 1, 2", [name])
    settings = server.query(None, "SELECT s.setrole, unnest(s.setconfig) FROM pg_db_role_setting s "
                                  "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY 1, 2",
                            [name])
    return dict(owner=row[0], connlimit=row[1], allowconn=row[2], comment=row[3], acl=acl, settings=settings)


def pg_dress(db, role):
    """Give a PostgreSQL database properties a restore must not lose: owner, GRANTs, settings, comment, limit."""
    srv, q = db.server, '"%s"' % db.name
    srv.execute(None, 'DROP ROLE IF EXISTS "%s"' % role)
    srv.execute(None, 'CREATE ROLE "%s" LOGIN' % role)
    srv.execute(None, "ALTER DATABASE %s OWNER TO \"%s\"" % (q, role))
    srv.execute(None, "REVOKE ALL ON DATABASE %s FROM PUBLIC" % q)
    srv.execute(None, "GRANT CONNECT ON DATABASE %s TO \"%s\"" % (q, role))
    srv.execute(None, "ALTER DATABASE %s SET search_path = app, public" % q)
    srv.execute(None, "ALTER DATABASE %s SET work_mem = '7MB'" % q)
    srv.execute(None, "ALTER ROLE \"%s\" IN DATABASE %s SET statement_timeout = '42s'" % (role, q))
    srv.execute(None, "COMMENT ON DATABASE %s IS 'the shop''s database'" % q)
    srv.execute(None, "ALTER DATABASE %s CONNECTION LIMIT 17" % q)


def take_backup(ansible, db, dest, **extra):
    args = dict(db.params, dest=str(dest), verify="restore")
    args.update(extra)
    return ansible.run(BACKUP, args, expect_failure=False)


def one_server(servers, names):
    for n in names:
        if n in servers:
            return servers[n]
    pytest.skip("none of %s started" % names)
    return None


def new_db(srv):
    """A fresh database on srv, as the integration conftest's DB (taken from the module that defines Server, so
    that a run that also collects tests/unit, whose conftest shadows the name "conftest", finds it too)."""
    return type(srv).__init__.__globals__["DB"](srv, srv.create_database())


@pytest.fixture
def pg16_db(servers):
    srv = one_server(servers, ["pg16", "pg15"])
    db = new_db(srv)
    yield db
    drop_all_like(srv, like_escape(db.name) + "%")
    drop_all_like(srv, "dbops\\_restore\\_" + like_escape(db.name) + "%")


@pytest.fixture
def maria_db(servers):
    srv = one_server(servers, ["mariadb"])
    db = new_db(srv)
    yield db
    drop_all_like(srv, like_escape(db.name) + "%")
    drop_all_like(srv, "dbops\\_restore\\_" + like_escape(db.name) + "%")


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

def test_pg_replace_swaps_in_a_checked_copy_and_keeps_the_old_one(ansible, pg16_db, tmp_path):
    db, srv = pg16_db, pg16_db.server
    role = "dbops_owner_" + db.name[-10:]
    tables = seed(db, rows=100)
    pg_dress(db, role)
    try:
        bk = take_backup(ansible, db, tmp_path / "bk")
        want = fingerprint(db, tables)
        props = pg_props(srv, db.name)
        # the target changes after the backup; a real database that merely looks like a replaced copy
        db.execute("DELETE FROM items WHERE id > 10")
        db.execute("CREATE VIEW later AS SELECT 1 AS x")
        lookalike = db.name + "_dbops_replaced_19990101T000000Z"
        srv.create_database(lookalike)
        changed = fingerprint(db, tables)
        params = dict(srv.params(), database=db.name, backup=bk["manifest_path"], replace=True)
        # an application session on the target: the swap terminates it (and any that come back) until none is left
        app = db.connect()
        app.execute("SELECT 1")
        res = batch(ansible, output=False, tasks=[
            dict(name="check", module=RESTORE, args=params, check=True),
            dict(name="first", module=RESTORE, args=params),
            dict(name="second", module=RESTORE, args=dict(params, keep_replaced_last=1)),
        ])
        check = res["check"]
        assert not check["failed"], check["msg"]
        assert check["changed"] and check["replaced"].startswith(db.name + "_dbops_replaced_")
        assert any("ALLOW_CONNECTIONS false" in s for s in check["steps"])
        assert any("RENAME TO %s" % check["replaced"] in s for s in check["steps"])
        first, second = res["first"], res["second"]
        assert not first["failed"], first["msg"]
        with pytest.raises(Exception):
            app.execute("SELECT 1")
        assert not second["failed"], second["msg"]
        assert first["changed"] and first["replaced"].startswith(db.name + "_dbops_replaced_")
        assert first["matches_backup_counts"] is True
        # the target holds the backup, with its database-level properties
        assert fingerprint(db, tables) == want
        assert db.query("SELECT count(*) FROM pg_views WHERE viewname = 'later'") == [(0,)]
        assert pg_props(srv, db.name) == props
        # retention (keep_replaced_last=1) removed the first run's copy, not the look-alike that is not ours
        kept = databases_like(srv, like_escape(db.name) + "\\_dbops\\_replaced\\_%")
        assert first["replaced"] != second["replaced"]
        assert sorted(kept) == sorted([second["replaced"], lookalike]), kept
        assert second["pruned_replaced"] == [first["replaced"]]
        # the second run's copy holds what the first restored (the backup)
        assert fingerprint(db, tables, database=second["replaced"]) == want
        marker = json.loads(pg_props(srv, second["replaced"])["comment"])
        assert marker["dbops.maintenance"] == "replaced" and marker["target"] == db.name
        assert marker["comment"] == props["comment"]
        assert changed != want
        # no side database left
        assert databases_like(srv, "dbops\\_restore\\_" + like_escape(db.name) + "%") == []
    finally:
        for name in databases_like(srv, like_escape(db.name) + "%"):
            srv.drop_database(name)
        srv.execute(None, 'DROP ROLE IF EXISTS "%s"' % role)


def test_pg_check_mode_touches_nothing(ansible, pg16_db, tmp_path):
    db, srv = pg16_db, pg16_db.server
    tables = seed(db, rows=20)
    bk = take_backup(ansible, db, tmp_path / "bk")
    db.execute("DELETE FROM items")
    before, props = fingerprint(db, tables), pg_props(srv, db.name)
    mine = "%" + like_escape(db.name) + "%"
    names = databases_like(srv, mine)
    r = ansible.run(RESTORE, dict(srv.params(), database=db.name, backup=bk["path"], replace=True), check=True,
                    expect_failure=False)
    assert r.changed and r["steps"] and "queries" not in r
    assert fingerprint(db, tables) == before and pg_props(srv, db.name) == props
    assert databases_like(srv, mine) == names


def test_pg_restore_into_a_new_database_goes_through_the_side_copy(ansible, pg16_db, tmp_path):
    db, srv = pg16_db, pg16_db.server
    tables = seed(db, rows=30)
    bk = take_backup(ansible, db, tmp_path / "bk")
    target = db.name + "_new"
    r = ansible.run(RESTORE, dict(srv.params(), database=target, backup=bk["path"]), expect_failure=False)
    assert r.changed and r["replaced"] is None
    assert fingerprint(db, tables, database=target) == fingerprint(db, tables)
    assert any(q.startswith('ALTER DATABASE "dbops_restore_') and 'RENAME TO "%s"' % target in q for q in r["queries"])


def test_side_and_replaced_names_fit_the_pg_limit(ansible, pg16_db, tmp_path):
    db, srv = pg16_db, pg16_db.server
    seed(db, rows=5)
    bk = take_backup(ansible, db, tmp_path / "bk")
    long_target = (db.name + "_" + "x" * 63)[:63]
    srv.create_database(long_target)
    replaced = None
    try:
        srv.execute(long_target, "CREATE TABLE t (id int)")
        r = ansible.run(RESTORE, dict(srv.params(), database=long_target, backup=bk["path"], replace=True),
                        expect_failure=False)
        replaced = r["replaced"]
        assert len(replaced.encode()) <= 63 and replaced in databases_like(srv, like_escape(replaced))
        assert replaced != long_target and "_dbops_replaced_" in replaced
        assert srv.query(long_target, "SELECT count(*) FROM items") == [(5,)]
        assert srv.query(replaced, "SELECT count(*) FROM t") == [(0,)]
    finally:
        if replaced:
            srv.drop_database(replaced)
        srv.drop_database(long_target)


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------

def maria_objects(srv, schema):
    out = {}
    for kind, q in (("VIEW", "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"),
                    ("TRIGGER", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"),
                    ("ROUTINE", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"),
                    ("EVENT", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s")):
        out[kind] = sorted(r[0] for r in srv.query(None, q, [schema]))
    return out


def maria_seed_objects(db):
    db.execute("CREATE VIEW big_items AS SELECT id, qty FROM items WHERE qty > 3")
    db.execute("CREATE TRIGGER items_qty BEFORE INSERT ON items FOR EACH ROW SET NEW.qty = NEW.qty + 100")
    db.execute("CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC RETURN x * 2")
    db.execute("CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM items WHERE id < 0")


def test_mariadb_replace_moves_tables_atomically_and_recreates_objects(ansible, maria_db, tmp_path):
    db, srv = maria_db, maria_db.server
    tables = seed(db, rows=1000)
    maria_seed_objects(db)
    bk = take_backup(ansible, db, tmp_path / "bk")
    want, want_objects = fingerprint(db, tables), maria_objects(srv, db.name)
    db.execute("DELETE FROM items WHERE id > 10")
    db.execute("DROP VIEW big_items")
    db.execute("CREATE VIEW later AS SELECT 1 AS x")
    changed = fingerprint(db, tables)
    r = ansible.run(RESTORE, dict(srv.params(), database=db.name, backup=bk["path"], replace=True),
                    expect_failure=False)
    assert r.changed and r["replaced"].startswith(db.name + "_dbops_replaced_")
    assert fingerprint(db, tables) == want and maria_objects(srv, db.name) == want_objects
    # the trigger of the backup fires on the target
    db.execute("INSERT INTO items VALUES (5000, 1, 1)")
    assert db.query("SELECT qty FROM items WHERE id = 5000") == [(101,)]
    assert fingerprint(db, tables, database=r["replaced"]) == changed
    assert "later" in maria_objects(srv, r["replaced"])["VIEW"]
    assert databases_like(srv, "dbops\\_restore\\_" + like_escape(db.name) + "%") == []
    comment = srv.query(None, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                        [r["replaced"]])[0][0]
    assert json.loads(comment)["target"] == db.name


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------

def test_sqlite_replace_keeps_owner_mode_and_inode_and_the_old_file(ansible, sqlite_db, tmp_path):
    tables = seed(sqlite_db, rows=50)
    bk = take_backup(ansible, sqlite_db, tmp_path / "bk")
    want = fingerprint(sqlite_db, tables)
    sqlite_db.execute("DELETE FROM items WHERE id > 5")
    os.chmod(sqlite_db.name, 0o640)
    st = os.stat(sqlite_db.name)
    changed = fingerprint(sqlite_db, tables)
    r = ansible.run(RESTORE, dict(engine="sqlite", database=sqlite_db.name, backup=bk["path"], replace=True),
                    expect_failure=False)
    assert r.changed and fingerprint(sqlite_db, tables) == want
    after = os.stat(sqlite_db.name)
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid, after.st_ino) == \
        (0o640, st.st_uid, st.st_gid, st.st_ino)
    kept = r["replaced"]
    assert kept == sqlite_db.name + kept[len(sqlite_db.name):] and "_dbops_replaced_" in kept
    assert fingerprint(type(sqlite_db)(kept), tables) == changed
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640
    assert json.load(open(kept + ".dbops.json"))["target"] == sqlite_db.name
    assert not [n for n in os.listdir(os.path.dirname(sqlite_db.name)) if n.startswith(".dbops-restore-")]


def test_rollback_role_records_the_replaced_database(ansible, sqlite_db, tmp_path):
    tables = seed(sqlite_db, rows=5)
    bk = take_backup(ansible, sqlite_db, tmp_path / "bk")
    want = fingerprint(sqlite_db, tables)
    sqlite_db.execute("DELETE FROM items")
    out = tmp_path / "rollback.json"
    play = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Roll back
      ansible.builtin.include_role:
        name: dbops.maintenance.rollback
    - name: Keep what it recorded
      ansible.builtin.copy:
        content: "{{ dbops_rollback | to_json }}"
        dest: "%s"
        mode: "0600"
""" % out
    r = ansible.playbook(play, extra_vars=dict(dbops_engine="sqlite", dbops_database=sqlite_db.name,
                                               dbops_rollback_backup=bk["manifest_path"], dbops_rollback_verify=False))
    assert r.rc == 0, r.stdout[-3000:]
    rec = json.loads(out.read_text())
    assert rec["restored"] and rec["replaced"].startswith(sqlite_db.name + "_dbops_replaced_")
    assert os.path.exists(rec["replaced"]) and fingerprint(sqlite_db, tables) == want


# --------------------------------------------------------------------------
# a backup that does not match its manifest is refused (from test_backup.py)
# --------------------------------------------------------------------------

def test_corrupted_backup_is_refused(ansible, one_pg_db, tmp_path):
    pg_db = one_pg_db
    seed(pg_db, rows=20)
    r = ansible.run(BACKUP, dict(pg_db.params, dest=str(tmp_path)), expect_failure=False)
    target = pg_db.name + "_r"
    # a restore that fails stops there and does not leave behind the database it created
    real = pg_db.server.info["bin_dir"]
    tools = make_tool_dir(tmp_path, real, {
        "pg_restore": 'if [ "$1" = --version ]; then exec %s/pg_restore --version; fi\n'
                      'echo "pg_restore: error: simulated failure" >&2; exit 1\n' % real}, links=["pg_dump", "psql"])
    failed = ansible.run(RESTORE, dict(pg_db.server.params(), database=target, backup=r["path"], tool_path=tools))
    assert failed.failed and "simulated failure" in failed["msg"] and "dropped again" in failed["msg"]
    assert pg_db.server.query(None, "SELECT 1 FROM pg_database WHERE datname = %s", [target]) == []
    with open(r["path"], "r+b") as f:
        f.seek(r["size"] // 2)
        byte = f.read(1)
        f.seek(r["size"] // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    rr = ansible.run(RESTORE, dict(pg_db.server.params(), database=target, backup=r["path"]))
    assert rr.failed and "does not match its manifest" in rr["msg"]
    assert pg_db.server.query(None, "SELECT 1 FROM pg_database WHERE datname = %s", [target]) == []
    wrong = ansible.run(RESTORE, dict(engine="mysql", login_host="127.0.0.1", backup=r["path"]))
    assert wrong.failed and "postgresql backup" in wrong["msg"]
