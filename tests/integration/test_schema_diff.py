"""dbops.maintenance.schema_diff through ansible-playbook against real servers (issue 12).

Engines: PostgreSQL 15 and 16, MariaDB 10.11 (``db`` / ``pg_db`` / ``mysql_db``) and SQLite (``sqlite_db``).
Every comparison is checked entry by entry (kind, name, what, both values); the target's catalog is read before
and after each run to prove schema_diff wrote nothing, and the server's database list to prove the shadow
database is gone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

MODULE = "dbops.maintenance.schema_diff"
APPLY = "dbops.maintenance.migration_apply"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"
# the SQL-file tools (replayed natively) and the fixture directory each one reads
SQL_TOOLS = {"prisma": "prisma", "dbmate": "dbmate", "golang-migrate": "golang-migrate", "goose": "goose",
             "sqlx": "sqlx", "flyway": "flyway"}
HOSTILE = 'we"ird`; DROP TABLE x; --'
MIXED = "MixedCase"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def qi(db, name):
    if db.engine == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def diff(ansible, db, fail=False, check=False, do_diff=False, **args):
    return ansible.run(MODULE, {**db.params, **args}, check=check, diff=do_diff, expect_failure=fail,
                       unsafe_args=True)


def apply(ansible, db, tool, path, **args):
    r = ansible.run(APPLY, {**db.params, "tool": tool, "migrations_path": str(path), "create_table": True,
                            "lint": False, **args}, unsafe_args=True)
    assert not r.get("failed"), r
    return r


def migrations_dir(tmp_path, files):
    """A dbmate migrations directory of the given {name: up SQL}."""
    d = tmp_path / "migrations"
    d.mkdir()
    for name, sql in files.items():
        (d / name).write_text("-- migrate:up\n%s\n\n-- migrate:down\n" % sql)
    return d


def shadows(db):
    """The dbops_scratch_ databases left on the server (none, after any schema_diff run)."""
    if db.engine == "postgresql":
        return [r[0] for r in db.query("SELECT datname FROM pg_database WHERE datname LIKE 'dbops\\_scratch\\_%%'")]
    if db.engine == "mysql":
        return [r[0] for r in db.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                                       "WHERE SCHEMA_NAME LIKE 'dbops\\_scratch\\_%%'")]
    return []


def catalog(db):
    """The target's catalog, to prove it is identical before and after (xmin: any committed change)."""
    if db.engine == "postgresql":
        return (db.query("SELECT c.relname, c.relkind, c.xmin::text, c.relfilenode FROM pg_class c "
                         "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname !~ '^pg_' "
                         "AND n.nspname <> 'information_schema' ORDER BY 1"),
                db.query("SELECT conname, xmin::text, convalidated FROM pg_constraint WHERE conrelid >= 16384 "
                         "ORDER BY 1"),
                db.query("SELECT nspname, xmin::text FROM pg_namespace ORDER BY 1"),
                db.query("SELECT count(*) FROM pg_type WHERE oid >= 16384"))
    if db.engine == "mysql":
        return (db.query("SELECT TABLE_NAME, TABLE_TYPE, CREATE_TIME, TABLE_COLLATION FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1"),
                db.query("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM "
                         "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2"),
                db.query("SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                         "WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2, 3"))
    return (db.query("SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2"),
            db.query("PRAGMA schema_version"), os.stat(db.name).st_mtime_ns)


def entries(r):
    return [(d["kind"], d["name"], d["what"]) for d in r["drift"]]


# --------------------------------------------------------------------------
# in sync after a clean apply: every SQL-file tool's fixture directory, every engine
# --------------------------------------------------------------------------

def check_in_sync(ansible, db, tool):
    path = FIXTURES / SQL_TOOLS[tool]
    apply(ansible, db, tool, path)
    before = catalog(db)
    r = diff(ansible, db, reference="migrations", tool=tool, migrations_path=str(path))
    assert r["in_sync"] is True and r["drift"] == [] and r["sql"] == [], r
    assert r["summary"] == "in sync: no differences"
    assert r["changed"] is False
    assert r["shadow"]["created"] is True and r["shadow"]["dropped"] is True
    if db.engine == "sqlite":
        assert os.path.basename(os.path.dirname(r["shadow"]["name"])).startswith("dbops_scratch_")
        assert not os.path.exists(os.path.dirname(r["shadow"]["name"]))
    else:
        assert r["shadow"]["name"].startswith("dbops_scratch_diff_")
    assert len(r["shadow"]["applied"]) >= 1
    assert r["counts"]["actual"] == r["counts"]["reference"]
    assert catalog(db) == before
    assert shadows(db) == []


@pytest.mark.parametrize("tool", sorted(t for t in SQL_TOOLS if t != "prisma"))
def test_in_sync_after_clean_apply(ansible, db, tool):
    check_in_sync(ansible, db, tool)


@pytest.mark.parametrize("tool", sorted(t for t in SQL_TOOLS if t != "prisma"))
def test_in_sync_after_clean_apply_sqlite(ansible, sqlite_db, tool):
    check_in_sync(ansible, sqlite_db, tool)


def test_in_sync_after_clean_apply_prisma_mariadb(ansible, mysql_db):
    # the prisma fixture is MySQL SQL (backticks, AUTO_INCREMENT, utf8mb4_unicode_ci)
    check_in_sync(ansible, mysql_db, "prisma")
