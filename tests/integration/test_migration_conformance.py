"""Conformance with the real tools: after migration_resolve writes, the tool agrees; what the tool writes,
migration_status reads. Tools from scripts/install-conformance-tools.sh (build/conformance): alembic and
Django (PyPI), knex and dbmate (npm). A test skips only when its tool is not installed there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from migration_batch import ServerDB, run_tasks

STATUS = "dbops.maintenance.migration_status"
RESOLVE = "dbops.maintenance.migration_resolve"
REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", REPO / "build" / "conformance"))
VENV = TOOLS_DIR / "venv" / "bin"
NODE_BIN = TOOLS_DIR / "node" / "node_modules" / ".bin"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def need(path, what):
    if not Path(path).exists():
        pytest.skip("%s is not installed (%s missing): run scripts/install-conformance-tools.sh" % (what, path))


def sh(cmd, cwd=None, env=None, ok=True):
    p = subprocess.run(cmd, cwd=cwd, env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                       timeout=120, check=False)
    if ok is True and p.returncode != 0:
        raise AssertionError("%s -> %s\n%s\n%s" % (cmd, p.returncode, p.stdout, p.stderr))
    return p


def urls(db):
    """SQLAlchemy URL, dbmate URL and a knex connection for the test database."""
    if db.engine == "sqlite":
        return "sqlite:///%s" % db.name, "sqlite:%s" % db.name, None
    i = db.server.info
    if db.engine == "mysql":
        return ("mysql+pymysql://%s:%s@%s:%s/%s" % (i["login_user"], i["login_password"], i["login_host"],
                                                    i["login_port"], db.name),
                "mysql://%s:%s@%s:%s/%s" % (i["login_user"], i["login_password"], i["login_host"], i["login_port"],
                                            db.name), None)
    sqlalchemy = "postgresql+psycopg://%s:%s@%s:%s/%s" % (
        i["login_user"], i["login_password"], i["login_host"], i["login_port"], db.name)
    dbmate = "postgres://%s:%s@%s:%s/%s?sslmode=disable" % (
        i["login_user"], i["login_password"], i["login_host"], i["login_port"], db.name)
    return (sqlalchemy, dbmate,
            dict(host=i["login_host"], port=i["login_port"], user=i["login_user"], password=i["login_password"],
                 database=db.name))


@pytest.fixture(params=["sqlite", "pg", "mariadb"])
def cdb(request):
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_db")
    servers = request.getfixturevalue("servers")
    name = "pg16" if request.param == "pg" else "mariadb"
    if name not in servers:
        pytest.skip("%s not started" % name)
    server = servers[name]
    name = server.create_database()
    request.addfinalizer(lambda: server.drop_database(name))
    return ServerDB(server, name)


# ----------------------------------------------------------------------------------------- alembic
ALEMBIC_ENV = '''
import os
from alembic import context
from sqlalchemy import create_engine

def run():
    engine = create_engine(os.environ["DBOPS_URL"])
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()

run()
'''


def test_alembic_agrees(ansible, cdb, tmp_path):
    need(VENV / "alembic", "alembic")
    db = cdb
    url = urls(db)[0]
    proj = tmp_path / "alembic"
    shutil.copytree(FIXTURES / "alembic", proj)
    (proj / "env.py").write_text(ALEMBIC_ENV)
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %s\n" % proj)
    alembic = [str(VENV / "alembic"), "-c", str(tmp_path / "alembic.ini")]
    env = {"DBOPS_URL": url}
    base = dict(db.params, tool="alembic", migrations_path=str(proj / "versions"))

    stamp2 = dict(base, revision="002_users", create_table=True)
    res = run_tasks(ansible, [dict(name="stamp2", module=RESOLVE, args=stamp2)])
    assert res["stamp2"]["changed"], res
    assert "002_users" in sh(alembic + ["current"], env=env).stdout
    assert sh(alembic + ["current", "--check-heads"], env=env, ok=None).returncode != 0
    res = run_tasks(ansible, [dict(name="stamp3", module=RESOLVE, args=dict(base, revision="003_orders"))])
    assert res["stamp3"]["changed"]
    assert "003_orders (head)" in sh(alembic + ["current", "--check-heads"], env=env).stdout
    # what alembic writes, migration_status reads
    sh(alembic + ["downgrade", "001_initial_schema"], env=env)
    res = run_tasks(ansible, [dict(name="st", module=STATUS, args=base),
                              dict(name="rb", module=RESOLVE, args=dict(base, revision="001_initial_schema",
                                                                        state="rolled_back"))])
    assert res["st"]["current"] == ["001_initial_schema"] and res["st"]["pending"] == ["002_users", "003_orders"]
    assert res["rb"]["changed"] and res["rb"]["state_after"] == "absent"
    # the table is empty now: alembic agrees there is no current revision
    assert "(head)" not in sh(alembic + ["current"], env=env).stdout
    sh(alembic + ["upgrade", "head"], env=env)
    res = run_tasks(ansible, [dict(name="st", module=STATUS, args=dict(base, fail_on=["pending", "unknown"]))])
    assert res["st"]["clean"] and res["st"]["current"] == ["003_orders"], res


# ------------------------------------------------------------------------------------------ Django
SETTINGS = '''
import os
SECRET_KEY = "conformance"
INSTALLED_APPS = ["shop"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
url = os.environ["DBOPS_DJANGO_DB"].split("|")
if url[0] == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": url[1]}}
elif url[0] == "mysql":
    import pymysql  # Django's MySQL backend on PyMySQL (mysqlclient is not installed)
    pymysql.install_as_MySQLdb()
    DATABASES = {"default": {"ENGINE": "django.db.backends.mysql", "HOST": url[1], "PORT": url[2],
                             "USER": url[3], "PASSWORD": url[4], "NAME": url[5]}}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "HOST": url[1], "PORT": url[2],
                             "USER": url[3], "PASSWORD": url[4], "NAME": url[5]}}
'''


def test_django_agrees(ansible, cdb, tmp_path):
    need(VENV / "django-admin", "Django")
    db = cdb
    proj = tmp_path / "site"
    shutil.copytree(FIXTURES / "django", proj)
    (proj / "settings.py").write_text(SETTINGS)
    if db.engine == "sqlite":
        spec = "sqlite|%s" % db.name
    else:
        i = db.server.info
        spec = "%s|%s|%s|%s|%s|%s" % ("mysql" if db.engine == "mysql" else "pg", i["login_host"], i["login_port"],
                                      i["login_user"], i["login_password"], db.name)
    env = {"DBOPS_DJANGO_DB": spec, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(proj)}
    manage = [str(VENV / "django-admin")]
    base = dict(db.params, tool="django", app="shop", migrations_path=str(proj / "shop" / "migrations"))

    sh(manage + ["migrate", "shop"], env=env)  # Django creates django_migrations and records both
    res = run_tasks(ansible, [
        dict(name="st", module=STATUS, args=dict(base, fail_on=["pending", "unknown"])),
        dict(name="unapply", module=RESOLVE, args=dict(base, migration="0002_item_name", state="absent")),
    ])
    assert res["st"]["clean"] and res["st"]["applied"] == ["0001_initial", "0002_item_name"], res["st"]
    assert res["unapply"]["changed"]
    out = sh(manage + ["showmigrations", "shop"], env=env).stdout
    assert "[X] 0001_initial" in out and "[ ] 0002_item_name" in out, out
    assert sh(manage + ["migrate", "--check"], env=env, ok=None).returncode != 0
    res = run_tasks(ansible, [dict(name="apply", module=RESOLVE, args=dict(base, migration="0002_item_name"))])
    assert res["apply"]["changed"]
    sh(manage + ["migrate", "--check"], env=env)
    assert "[X] 0002_item_name" in sh(manage + ["showmigrations", "shop"], env=env).stdout


def test_django_table_as_django_creates_it(ansible, sqlite_db, tmp_path):
    """create_table makes the table Django would make (same columns and types, per sqlite_master)."""
    need(VENV / "django-admin", "Django")
    other = tmp_path / "django_made.sqlite3"
    proj = tmp_path / "site"
    shutil.copytree(FIXTURES / "django", proj)
    (proj / "settings.py").write_text(SETTINGS)
    env = {"DBOPS_DJANGO_DB": "sqlite|%s" % other, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(proj)}
    sh([str(VENV / "django-admin"), "migrate", "shop", "0001"], env=env)
    res = run_tasks(ansible, [dict(name="mk", module=RESOLVE, args=dict(
        sqlite_db.params, tool="django", app="shop", migration="0001_initial", create_table=True,
        migrations_path=str(proj / "shop" / "migrations")))])
    assert res["mk"]["changed"]
    import sqlite3  # pylint: disable=import-outside-toplevel

    def cols(p):
        return sqlite3.connect(p).execute(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info('django_migrations')").fetchall()

    assert cols(sqlite_db.name) == cols(other)


# -------------------------------------------------------------------------------------- dbmate
def test_dbmate_agrees(ansible, cdb, tmp_path):
    need(NODE_BIN / "dbmate", "dbmate")
    db = cdb
    mig = tmp_path / "db" / "migrations"
    shutil.copytree(FIXTURES / "dbmate", mig)
    dbmate = [str(NODE_BIN / "dbmate"), "--url", urls(db)[1], "--migrations-dir", str(mig), "--no-dump-schema"]
    base = dict(db.params, tool="dbmate", migrations_path=str(mig))
    res = run_tasks(ansible, [
        dict(name="a1", module=RESOLVE, args=dict(base, migration="20240101000001", create_table=True)),
        dict(name="a2", module=RESOLVE, args=dict(base, migration="20240101000002"))])
    assert res["a1"]["changed"] and res["a2"]["changed"]
    sh(dbmate + ["status", "--exit-code"])
    res = run_tasks(ansible, [dict(name="rm", module=RESOLVE, args=dict(base, migration="20240101000002",
                                                                        state="absent"))])
    assert res["rm"]["changed"]
    p = sh(dbmate + ["status", "--exit-code"], ok=None)
    assert p.returncode != 0 and "[ ] 20240101000002_users.sql" in p.stdout, p.stdout
    sh(dbmate + ["up"])  # dbmate records it itself
    res = run_tasks(ansible, [dict(name="st", module=STATUS, args=dict(base, fail_on=["pending"]))])
    assert res["st"]["clean"], res["st"]
    sh(dbmate + ["rollback"])
    res = run_tasks(ansible, [dict(name="st", module=STATUS, args=base)])
    assert res["st"]["pending"] == ["20240101000002"]


# ---------------------------------------------------------------------------------------- knex
def test_knex_agrees_on_postgresql(ansible, pg_db, tmp_path):
    need(NODE_BIN / "knex", "knex")
    db = pg_db
    mig = tmp_path / "migrations"
    shutil.copytree(FIXTURES / "knex", mig)
    conn = urls(db)[2]
    knexfile = tmp_path / "knexfile.js"
    knexfile.write_text("module.exports = { client: 'pg', connection: %s, migrations: { directory: %r } };\n"
                        % (repr(conn).replace("'", '"').replace('None', 'null'), str(mig)))
    env = {"NODE_PATH": str(TOOLS_DIR / "node" / "node_modules")}
    knex = [str(NODE_BIN / "knex"), "--knexfile", str(knexfile)]
    base = dict(db.params, tool="knex", migrations_path=str(mig))
    res = run_tasks(ansible, [dict(name="a1", module=RESOLVE, args=dict(
        base, migration="20240101000001_init.js", create_table=True))])
    assert res["a1"]["changed"], res
    out = sh(knex + ["migrate:status"], env=env, cwd=tmp_path, ok=None)
    assert "Found 1 Completed Migration" in out.stdout and "Found 1 Pending Migration" in out.stdout, out
    sh(knex + ["migrate:latest"], env=env, cwd=tmp_path)  # knex runs the second one and records it (batch 2)
    res = run_tasks(ansible, [dict(name="st", module=STATUS, args=dict(base, fail_on=["pending"]))])
    assert res["st"]["clean"], res["st"]
    assert db.query("SELECT name, batch FROM knex_migrations ORDER BY id") == [
        ("20240101000001_init.js", 1), ("20240101000002_users.js", 2)]
    res = run_tasks(ansible, [dict(name="rm", module=RESOLVE, args=dict(
        base, migration="20240101000002_users.js", state="rolled_back"))])
    assert res["rm"]["changed"]
    out = sh(knex + ["migrate:status"], env=env, cwd=tmp_path, ok=None)
    assert "Found 1 Pending Migration" in out.stdout, out
