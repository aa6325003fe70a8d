"""migration_apply running the real Django (`manage.py migrate`) through `command`, on PostgreSQL and SQLite.

A Django project written here (settings from the environment option, one app `shop` with three migrations):
check mode lists the pending migrations and runs nothing; the run applies them under our maintenance lock,
`applied` is the django_migrations difference, and on PostgreSQL Django's connection (psycopg 3, libpq) has the
lock_timeout we pass through PGOPTIONS; the re-run changes nothing; a failing migration is reported with
Django's own output, not retried, and the history shows it still pending. Django comes from the conformance
venv (scripts/install-conformance-tools.sh; DBOPS_CONFORMANCE_DIR).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
from migration_batch import run_tasks
from test_migration_apply import make_db

APPLY = "dbops.maintenance.migration_apply"
REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", REPO / "build" / "conformance"))
PYTHON = TOOLS_DIR / "venv" / "bin" / "python"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


SETTINGS = """import os
SECRET_KEY = 'dbops-test'
INSTALLED_APPS = ['shop']
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
if os.environ['DJ_ENGINE'] == 'sqlite':
    DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': os.environ['DJ_NAME']}}
else:
    DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': os.environ['DJ_NAME'],
                             'USER': os.environ['DJ_USER'], 'PASSWORD': os.environ['DJ_SECRET'],
                             'HOST': os.environ['DJ_HOST'], 'PORT': os.environ['DJ_PORT']}}
"""

MANAGE = """import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

INITIAL = """from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.CreateModel(name='Item', fields=[
        ('id', models.BigAutoField(primary_key=True)), ('name', models.CharField(max_length=40))])]
"""

RUNSQL = """from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [('shop', %r)]
    operations = [migrations.RunSQL(%r, reverse_sql=migrations.RunSQL.noop)]
"""


def project(root, engine):
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "__init__.py").write_text("")
    (root / "proj" / "settings.py").write_text(SETTINGS)
    (root / "manage.py").write_text(MANAGE)
    mig = root / "shop" / "migrations"
    mig.mkdir(parents=True)
    for f in (root / "shop" / "__init__.py", root / "shop" / "models.py", mig / "__init__.py"):
        f.write_text("")
    (mig / "0001_initial.py").write_text(INITIAL)
    seen = ("CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout" if engine == "pg"
            else "CREATE TABLE seen (lock_timeout text)")
    (mig / "0002_seen.py").write_text(RUNSQL % ("0001_initial", seen))
    return mig


@pytest.mark.parametrize("engine", ["pg", "sqlite"])
def test_django_migrate_through_command(ansible, request, tmp_path, engine):
    if not PYTHON.exists() or os.system("%s -c 'import django' 2>/dev/null" % PYTHON) != 0:
        pytest.skip("Django is not installed (%s): run scripts/install-conformance-tools.sh" % PYTHON)
    db = make_db(request, engine, tmp_path, "django")
    root = tmp_path / "app"
    mig = project(root, engine)
    if engine == "pg":
        i = db.server.info
        env = dict(DJ_ENGINE="postgresql", DJ_NAME=db.name, DJ_USER=i["login_user"], DJ_SECRET=i["login_password"],
                   DJ_HOST=i["login_host"], DJ_PORT=str(i["login_port"]))
        secret = i["login_password"]
    else:
        env = dict(DJ_ENGINE="sqlite", DJ_NAME=db.name)
        secret = None
    args = dict(db.params, tool="django", app="shop", migrations_path=str(mig), lock_timeout=2.5,
                command=[str(PYTHON), "manage.py", "migrate", "shop", "--noinput"], chdir=str(root),
                environment=env, command_timeout=600)

    def django(*argv):  # the oracle: Django's own view of the same database
        import subprocess
        return subprocess.run([str(PYTHON), "manage.py"] + list(argv), cwd=root, env=dict(os.environ, **env),
                              capture_output=True, text=True, timeout=300, check=False)

    shown = django("showmigrations", "shop")
    assert shown.returncode == 0, shown.stderr
    django_pending = [line.split("]", 1)[1].strip() for line in shown.stdout.splitlines() if "[ ]" in line]
    res = run_tasks(ansible, [dict(name="check", module=APPLY, args=args, check=True),
                              dict(name="up", module=APPLY, args=args),
                              dict(name="again", module=APPLY, args=args)])
    # what migration_apply reads as pending is what Django would apply; afterwards Django finds nothing to do
    assert res["check"]["pending"] == django_pending, (res["check"]["pending"], shown.stdout)
    checked = django("migrate", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    r = res["check"]
    assert not r["failed"] and r["changed"] and r["pending"] == ["0001_initial", "0002_seen"], r
    assert r["applied"] == [] and "rc" not in r, "check mode ran the command: %s" % r
    r = res["up"]
    assert not r["failed"], r
    assert r["changed"] and [a["name"] for a in r["applied"]] == ["0001_initial", "0002_seen"], r
    assert r["pending"] == [] and r["rc"] == 0, r
    assert "Applying shop.0001_initial" in r["stdout"], r["stdout"]
    if secret:
        assert secret not in r["stdout"] + r["stderr"]
    r = res["again"]
    assert not r["failed"] and r["changed"] is False and r["applied"] == [], r
    assert "No migrations to apply" in r["stdout"], r["stdout"]

    def query(sql):
        if engine == "sqlite":
            conn = sqlite3.connect(db.name)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        return db.query(sql)
    assert [tuple(x) for x in query("SELECT app, name FROM django_migrations ORDER BY id")] == [
        ("shop", "0001_initial"), ("shop", "0002_seen")]
    assert query("SELECT count(*) FROM shop_item")[0][0] == 0
    if engine == "pg":
        # Django's own connection (psycopg 3 on libpq) got lock_timeout from PGOPTIONS
        assert query("SELECT lock_timeout FROM seen") == [("2500ms",)]

    # a failing migration: Django's output in the result, not retried, still pending afterwards
    (mig / "0003_fail.py").write_text(RUNSQL % ("0002_seen", "SELECT * FROM no_such_table"))
    r = run_tasks(ansible, [dict(name="fail", module=APPLY, args=args)])["fail"]
    assert r["failed"] and "exited with 1" in r["msg"] and "not retried" in r["msg"], r
    assert "no_such_table" in r["stderr"], r["stderr"][-2000:]
    assert r["applied"] == [] and r["pending"] == ["0003_fail"], r
    assert len(query("SELECT name FROM django_migrations")) == 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
