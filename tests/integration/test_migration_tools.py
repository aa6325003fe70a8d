"""migration_status / migration_resolve through Ansible, for every tool, on PostgreSQL 15/16, MariaDB and SQLite.

Each tool's lifecycle: no table -> create_table + applied (check mode first) -> idempotent -> status
pending/clean -> unknown (file removed from disk) -> modified (file changed; checksum tools) -> failed
(a row written the way the tool writes a failed run) -> resolve rolled_back / absent -> refusals.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from migration_batch import ServerDB, run_tasks

STATUS = "dbops.maintenance.migration_status"
RESOLVE = "dbops.maintenance.migration_resolve"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"

# tool -> (sub-directory of fixtures, migration ids on disk in order, extra args, table)
TOOLS = {
    "prisma": ("prisma", ["20250101000000_init", "20250821015630_add_shipment_file_field"], {}, "_prisma_migrations"),
    "alembic": ("alembic/versions", ["001_initial_schema", "002_users", "003_orders"], {}, "alembic_version"),
    "flyway": ("flyway", ["1", "1.1", "2"], {}, "flyway_schema_history"),
    "django": ("django/shop/migrations", ["0001_initial", "0002_item_name"], {"app": "shop"}, "django_migrations"),
    "golang-migrate": ("golang-migrate", ["1", "2", "3"], {}, "schema_migrations"),
    "sqlx": ("sqlx", ["20240101000001", "20240101000002"], {}, "_sqlx_migrations"),
    "knex": ("knex", ["20240101000001_init.js", "20240101000002_users.js"], {}, "knex_migrations"),
    "rails": ("rails", ["20240101000001", "20240101000002"], {}, "schema_migrations"),
    "dbmate": ("dbmate", ["20240101000001", "20240101000002"], {}, "schema_migrations"),
    "goose": ("goose", ["1", "2"], {}, "goose_db_version"),
}
CHECKSUM_TOOLS = {"prisma", "flyway", "sqlx"}
NUMERIC = {"flyway", "golang-migrate", "sqlx", "goose"}
# the file of each migration id, relative to the tool's directory (to remove / modify it)
FILE_OF = {
    "prisma": lambda i: i + "/migration.sql",
    "alembic": lambda i: i + ".py",
    "flyway": lambda i: {"1": "V1__init.sql", "1.1": "V1_1__add_users.sql", "2": "V2__orders.sql"}[i],
    "django": lambda i: i + ".py",
    "golang-migrate": lambda i: "%s_step%s.up.sql" % (i, i),
    "sqlx": lambda i: {"20240101000001": "20240101000001_init.sql",
                       "20240101000002": "20240101000002_add_users.sql"}[i],
    "knex": lambda i: i,
    "rails": lambda i: {"20240101000001": "20240101000001_create_users.rb",
                        "20240101000002": "20240101000002_add_email.rb"}[i],
    "dbmate": lambda i: {"20240101000001": "20240101000001_init.sql", "20240101000002": "20240101000002_users.sql"}[i],
    "goose": lambda i: {"1": "00001_init.sql", "2": "00002_users.sql"}[i],
}


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


@pytest.fixture(params=["pg", "mariadb", "sqlite"])
def target(request):
    """A fresh database on PostgreSQL (15 and 16 alternate by tool), MariaDB or SQLite."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_db")
    if request.param == "mariadb":
        return request.getfixturevalue("mysql_db")
    servers = request.getfixturevalue("servers")
    tool = request.node.callspec.params.get("tool", "")
    name = "pg15" if sorted(TOOLS).index(tool) % 2 == 0 else "pg16"
    if name not in servers:
        pytest.skip("%s not started" % name)
    server = servers[name]
    dbname = server.create_database()
    request.addfinalizer(lambda: server.drop_database(dbname))
    return ServerDB(server, dbname)


def copy_dir(tool, tmp_path):
    sub = TOOLS[tool][0]
    dest = tmp_path / "migrations" / sub
    shutil.copytree(FIXTURES / sub, dest)
    return dest


def q(db, name):
    return "`%s`" % name if db.engine == "mysql" else '"%s"' % name


def write_failed(db, tool, mid, table):
    """Record mid as failed the way the tool itself does when a run stops halfway."""
    t = q(db, table)
    if tool == "prisma":
        db.execute("INSERT INTO %s (id, checksum, migration_name, started_at, logs, applied_steps_count) "
                   "VALUES ('%s', 'x', '%s', CURRENT_TIMESTAMP, 'P3018', 0)"
                   % (t, uuid.uuid4(), mid))
    elif tool == "flyway":
        rank = db.query("SELECT COALESCE(MAX(installed_rank), 0) + 1 FROM %s" % t)[0][0]
        db.execute("INSERT INTO %s (installed_rank, version, description, type, script, checksum, installed_by, "
                   "execution_time, success) VALUES (%d, '%s', 'orders', 'SQL', 'V2__orders.sql', 1, 'me', 5, %s)"
                   % (t, rank, mid, "false" if db.engine == "postgresql" else "0"))
    elif tool == "sqlx":
        db.execute("INSERT INTO %s (version, description, success, checksum, execution_time) "
                   "VALUES (%s, 'add users', %s, %s, -1)"
                   % (t, mid, "false" if db.engine == "postgresql" else "0",
                      "'\\x00'::bytea" if db.engine == "postgresql" else "X'00'"))
    elif tool == "golang-migrate":
        db.execute("UPDATE %s SET version = %s, dirty = %s" % (t, mid, "true" if db.engine == "postgresql" else "1"))
    else:
        return False
    return True


def norm(queries):
    """Statements with Prisma's random UUIDs masked."""
    return [re.sub(r"'[0-9a-f-]{36}'", "'<uuid>'", s) for s in queries]


def ok(res, name):
    r = res[name]
    assert not r["failed"], "%s failed: %s" % (name, json.dumps(r, indent=1, default=str)[:3000])
    return r


def bad(res, name, *needles):
    r = res[name]
    assert r["failed"], "%s did not fail: %s" % (name, json.dumps(r, indent=1, default=str)[:3000])
    for n in needles:
        assert n in r["msg"], (name, n, r["msg"])
    return r


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_lifecycle(ansible, target, tool, tmp_path):  # pylint: disable=redefined-outer-name,too-many-statements
    db = target
    _sub, ids, extra, table = TOOLS[tool]
    path = copy_dir(tool, tmp_path)
    base = dict(db.params, tool=tool, migrations_path=str(path), **extra)
    first, last = path / FILE_OF[tool](ids[0]), path / FILE_OF[tool](ids[-1])
    # golang-migrate knows only its recorded (latest) version: that one goes missing
    gone = last if tool in ("golang-migrate", "alembic") else first
    comment = {".py": "#", ".js": "//", ".rb": "#"}.get(last.suffix, "--")
    apply_first = dict(base, migration=ids[0], create_table=True)
    tasks = [
        dict(name="status_none", module=STATUS, args=base),
        dict(name="resolve_no_table", module=RESOLVE, args=dict(base, migration=ids[0])),
        dict(name="check", module=RESOLVE, args=apply_first, check=True, diff=True),
        dict(name="status_after_check", module=STATUS, args=base),
        dict(name="apply", module=RESOLVE, args=apply_first, diff=True),
        dict(name="apply_again", module=RESOLVE, args=apply_first, diff=True),
        dict(name="status_pending", module=STATUS, args=base),
        dict(name="gate_pending", module=STATUS, args=dict(base, fail_on=["pending"])),
    ]
    tasks += [dict(name="apply_%d" % n, module=RESOLVE, args=dict(base, migration=mid))
              for n, mid in enumerate(ids[1:], 1)]
    tasks.append(dict(name="status_clean", module=STATUS,
                      args=dict(base, fail_on=["failed", "pending", "unknown", "modified"])))
    # modified (checksum tools) + unknown, in one status: the last file edited, the first removed
    tasks += [
        dict(name="edit", shell="cp %s %s && echo '%s edited after deploy' >> %s && mv %s %s"
             % (last, tmp_path / "orig", comment, last, gone, tmp_path / "gone")),
        dict(name="status_drift", module=STATUS, args=dict(base, fail_on=["unknown"])),
        dict(name="apply_modified", module=RESOLVE, args=dict(base, migration=ids[-1])),
        dict(name="restore", shell="mv %s %s && mv %s %s" % (tmp_path / "gone", gone, tmp_path / "orig", last)),
        dict(name="absent", module=RESOLVE, args=dict(base, migration=ids[-1], state="absent"), diff=True),
        dict(name="absent_again", module=RESOLVE, args=dict(base, migration=ids[-1], state="absent")),
        dict(name="status_absent", module=STATUS, args=base),
        dict(name="refuse_missing", module=RESOLVE,
             args=dict(base, migration="99" if tool in NUMERIC else "20991231235959_nope")),
    ]
    res = run_tasks(ansible, tasks)

    r = ok(res, "status_none")
    assert r["table_exists"] is False and r["pending"] == ids and r["applied"] == [], r
    assert "does not exist" in r["summary"]
    bad(res, "resolve_no_table", "create_table: true", "Nothing was changed")
    r = ok(res, "check")
    assert r["changed"] and r["created_table"] and r["state_before"] == "absent" and r["state_after"] == "applied"
    assert r["queries"][0].upper().startswith("CREATE TABLE"), r["queries"]
    assert r["diff"]["after"]["rows"], r
    assert ok(res, "status_after_check")["table_exists"] is False, "check mode created the table"
    r = ok(res, "apply")
    assert r["changed"] and r["state_after"] == "applied"
    assert norm(r["queries"]) == norm(res["check"]["queries"])
    assert r["diff"]["after"]["rows"], r
    r = ok(res, "apply_again")
    assert r["changed"] is False and r["queries"] == [] and r["diff"]["before"] == r["diff"]["after"]
    r = ok(res, "status_pending")
    assert r["applied"] == [ids[0]] and r["pending"] == ids[1:] and r["clean"] is False, r
    assert r["current"] == [ids[0]]
    r = bad(res, "gate_pending", "pending", ids[-1])
    assert r["pending"] == ids[1:]
    for n in range(1, len(ids)):
        assert ok(res, "apply_%d" % n)["changed"]
    r = ok(res, "status_clean")
    assert r["clean"] is True and r["applied"] == ids and r["current"] == [ids[-1]], r
    assert "clean" in r["summary"] and r["failed_migrations"] == []
    r = bad(res, "status_drift", "unknown")
    assert r["unknown"] == [ids[-1] if tool in ("golang-migrate", "alembic") else ids[0]], r
    if tool in CHECKSUM_TOOLS:
        assert r["modified"] == [ids[-1]], r
        bad(res, "apply_modified", "checksum", "Nothing was changed")
    elif tool == "alembic":  # its script is the one gone: alembic cannot locate it, nor can we
        bad(res, "apply_modified", "Can't locate revision", "Nothing was changed")
    else:
        assert r["modified"] == []
        assert ok(res, "apply_modified")["changed"] is False
    r = ok(res, "absent")
    assert r["changed"] and r["state_before"] == "applied" and r["state_after"] == "absent"
    assert r["diff"]["before"]["rows"] and (r["diff"]["after"]["rows"] == [] or tool in ("golang-migrate", "alembic"))
    assert ok(res, "absent_again")["changed"] is False
    r = ok(res, "status_absent")
    if tool == "alembic":  # absent removes the head row itself: nothing is applied any more
        assert r["pending"] == ids and r["applied"] == [], r
    else:
        assert r["pending"] == [ids[-1]] and r["applied"] == ids[:-1], r
    count = db.query("SELECT COUNT(*) FROM %s" % q(db, table))
    r = bad(res, "refuse_missing", "Nothing was changed")
    assert "not in migrations_path" in r["msg"] or "Can't locate revision" in r["msg"], r["msg"]
    assert db.query("SELECT COUNT(*) FROM %s" % q(db, table)) == count

    if tool not in ("prisma", "flyway", "sqlx", "golang-migrate"):
        return
    # failed: a row written the way the tool writes a run that stopped halfway
    write_failed(db, tool, ids[-1], table)
    rb = dict(base, migration=ids[-1], state="rolled_back")
    res = run_tasks(ansible, [
        dict(name="status_failed", module=STATUS, args=dict(base, fail_on=["failed"])),
        dict(name="rb_check", module=RESOLVE, args=rb, check=True),
        dict(name="rb", module=RESOLVE, args=rb, diff=True),
        dict(name="rb_again", module=RESOLVE, args=rb),
        dict(name="status_rb", module=STATUS, args=base),
    ])
    r = bad(res, "status_failed", "failed", ids[-1])
    assert r["failed_migrations"] == [ids[-1]], r
    r = ok(res, "rb_check")
    assert r["changed"] and r["state_before"] == "failed" and r["state_after"] == "absent", r
    r = ok(res, "rb")
    assert r["changed"] and r["state_after"] == "absent" and r["queries"] == res["rb_check"]["queries"]
    assert ok(res, "rb_again")["changed"] is False
    r = ok(res, "status_rb")
    assert r["failed_migrations"] == [] and r["pending"] == [ids[-1]], r
    write_failed(db, tool, ids[-1], table)
    res = run_tasks(ansible, [
        dict(name="apply_over_failed", module=RESOLVE, args=dict(base, migration=ids[-1])),
        dict(name="status_end", module=STATUS, args=base),
        dict(name="rb_applied", module=RESOLVE, args=rb),
    ])
    r = ok(res, "apply_over_failed")
    assert r["changed"] and r["state_before"] == "failed" and r["state_after"] == "applied"
    assert ok(res, "status_end")["clean"]
    if tool == "golang-migrate":
        assert ok(res, "rb_applied")["changed"]
    else:
        bad(res, "rb_applied", "state=absent", "Nothing was changed")


@pytest.mark.parametrize("tool", ["prisma", "flyway"])
def test_wrong_tool_refused(ansible, sqlite_db, tool, tmp_path):
    db = sqlite_db
    db.execute("CREATE TABLE %s (version varchar(128) primary key)" % TOOLS[tool][3])
    path = copy_dir(tool, tmp_path)
    args = dict(db.params, tool=tool, migrations_path=str(path))
    r = ansible.run(STATUS, args)
    assert r["failed"] and "Was the right tool chosen" in r["msg"], r
    r = ansible.run(RESOLVE, dict(args, migration=TOOLS[tool][1][0], history_table=TOOLS[tool][3]))
    assert r["failed"] and "missing" in r["msg"]
    # golang-migrate's schema_migrations is not rails'/dbmate's: the message names the tools that fit
    db.execute("CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)")
    r = ansible.run(STATUS, dict(db.params, tool="prisma", history_table="schema_migrations"))
    assert r["failed"] and "golang-migrate" in r["msg"] and "rails" in r["msg"], r["msg"]
