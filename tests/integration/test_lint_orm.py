"""migration_lint on the SQL that Django (``manage.py sqlmigrate``) and Alembic (offline, ``alembic upgrade
--sql``) generate for common changes, generated at test time by the real tools (scripts/install-conformance-
tools.sh; DBOPS_CONFORMANCE_DIR overrides build/conformance), on the PostgreSQL and MySQL dialects: add a
column, add a nullable foreign key, add an index, rename a column, add a NOT NULL column with a default. The
lint gate refuses on ``error``: none of them may get one (issue 13). They are not silent either: the expected
warnings (lock without lock_timeout, index not built concurrently, rename) are asserted.

The apps and migrations are written by this file into a temporary directory; the tools run there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

MOD = "dbops.maintenance.migration_lint"
REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", REPO / "build" / "conformance"))
VENV = TOOLS_DIR / "venv" / "bin"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def need(path, what):
    if not Path(path).exists():
        pytest.skip("%s is not installed (%s missing): run scripts/install-conformance-tools.sh" % (what, path))


def sh(cmd, cwd, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                       timeout=180, check=False)
    assert p.returncode == 0, "%s -> %s\n%s\n%s" % (cmd, p.returncode, p.stdout, p.stderr)
    return p.stdout


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ------------------------------------------------------------------------------------------ Django
DJANGO_SETTINGS = '''import os
if os.environ.get("DBOPS_DJANGO_ENGINE") == "mysql":
    import pymysql
    pymysql.version_info = (2, 2, 1, "final", 0)   # Django's MySQL backend on PyMySQL (no mysqlclient build)
    pymysql.install_as_MySQLdb()
    ENGINE = "django.db.backends.mysql"
else:
    ENGINE = "django.db.backends.postgresql"
SECRET_KEY = "lint-test"
INSTALLED_APPS = ["shop"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": {"ENGINE": ENGINE, "NAME": os.environ["DBOPS_DB_NAME"], "HOST": os.environ["DBOPS_DB_HOST"],
                         "PORT": os.environ["DBOPS_DB_PORT"], "USER": os.environ["DBOPS_DB_USER"],
                         "PASSWORD": os.environ["DBOPS_DB_PASSWORD"]}}
'''
DJANGO_MANAGE = '''import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
'''
# (name, operations) of the migrations after 0001_initial; what makemigrations writes for these model changes
DJANGO_MIGRATIONS = [
    ("0002_add_column", 'migrations.AddField("Book", "pages", models.IntegerField(null=True))'),
    ("0003_add_nullable_fk", 'migrations.AddField("Book", "editor", models.ForeignKey("shop.Author", null=True, '
                             'on_delete=models.SET_NULL, related_name="+"))'),
    ("0004_add_index", 'migrations.AddIndex("Book", models.Index(fields=["title"], name="book_title_idx"))'),
    ("0005_rename", 'migrations.RenameField("Book", "pages", "page_count")'),
    ("0006_add_not_null_default", 'migrations.AddField("Book", "stock", models.IntegerField(default=0))'),
]
DJANGO_INITIAL = '''from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel("Author", [("id", models.BigAutoField(primary_key=True)),
                                          ("name", models.CharField(max_length=100))]),
        migrations.CreateModel("Book", [("id", models.BigAutoField(primary_key=True)),
                                        ("title", models.CharField(max_length=200)),
                                        ("author", models.ForeignKey("shop.Author", on_delete=models.CASCADE))]),
    ]
'''


def django_project(root):
    files = {"settings.py": DJANGO_SETTINGS, "manage.py": DJANGO_MANAGE, "shop/__init__.py": "",
             "shop/models.py": "", "shop/migrations/__init__.py": "",
             "shop/migrations/0001_initial.py": DJANGO_INITIAL}
    before = "0001_initial"
    for name, operation in DJANGO_MIGRATIONS:
        files["shop/migrations/%s.py" % name] = (
            "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
            "    dependencies = [(\"shop\", %r)]\n    operations = [%s]\n" % (before, operation))
        before = name
    write(root, files)


# ----------------------------------------------------------------------------------------- Alembic
ALEMBIC_ENV = '''import os
from alembic import context

context.configure(url=os.environ["DBOPS_SQLALCHEMY_URL"], literal_binds=True, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
'''
# (revision, body of upgrade()) after r1, which creates the tables
ALEMBIC_REVISIONS = [
    ("r2", 'op.add_column("book", sa.Column("pages", sa.Integer(), nullable=True))'),
    ("r3", 'op.add_column("book", sa.Column("editor_id", sa.BigInteger(), nullable=True))\n'
           '    op.create_foreign_key("fk_book_editor", "book", "author", ["editor_id"], ["id"])'),
    ("r4", 'op.create_index("ix_book_title", "book", ["title"])'),
    ("r5", 'op.alter_column("book", "pages", new_column_name="page_count", existing_type=sa.Integer(), '
           'existing_nullable=True)'),
    ("r6", 'op.add_column("book", sa.Column("stock", sa.Integer(), nullable=False, server_default="0"))'),
]
ALEMBIC_INITIAL = ('op.create_table("author", sa.Column("id", sa.BigInteger(), primary_key=True), '
                   'sa.Column("name", sa.String(100)))\n'
                   '    op.create_table("book", sa.Column("id", sa.BigInteger(), primary_key=True), '
                   'sa.Column("title", sa.String(200), nullable=False))')


def alembic_project(root):
    files = {"alembic.ini": "[alembic]\nscript_location = .\n", "env.py": ALEMBIC_ENV, "script.py.mako": ""}
    before = None
    for rev, body in [("r1", ALEMBIC_INITIAL)] + ALEMBIC_REVISIONS:
        files["versions/%s.py" % rev] = (
            "import sqlalchemy as sa\nfrom alembic import op\n\nrevision, down_revision = %r, %r\n\n\n"
            "def upgrade():\n    %s\n" % (rev, before, body))
        before = rev
    write(root, files)


def lint_dir(ansible, out, engine, **kw):
    """migration_lint over the generated files with the default gate (fail_on: error)."""
    r = ansible.run(MOD, dict(path=[str(out)], engine=engine, **kw), expect_failure=False)
    assert not [f for f in r["findings"] if f["severity"] == "error"]
    assert r["counts"]["error"] == 0
    return {(Path(f["file"]).name, f["line"], f["rule"]) for f in r["findings"] if f["severity"] == "warning"}


DJANGO_PG_WARNINGS = {
    ("0002_add_column.sql", 5, "missing-lock-timeout"),
    ("0003_add_nullable_fk.sql", 5, "missing-lock-timeout"),
    ("0003_add_nullable_fk.sql", 6, "index-not-concurrently"),
    ("0004_add_index.sql", 5, "index-not-concurrently"),
    ("0004_add_index.sql", 5, "missing-lock-timeout"),
    ("0005_rename.sql", 5, "rename-column"),
    ("0005_rename.sql", 5, "missing-lock-timeout"),
    ("0006_add_not_null_default.sql", 5, "missing-lock-timeout"),
}


def test_django_sqlmigrate_postgresql(ansible, pg_db, tmp_path):
    need(VENV / "django-admin", "Django")
    django_project(tmp_path / "app")
    i = pg_db.server.info
    env = dict(DBOPS_DB_NAME=pg_db.name, DBOPS_DB_HOST=i["login_host"], DBOPS_DB_PORT=str(i["login_port"]),
               DBOPS_DB_USER=i["login_user"], DBOPS_DB_PASSWORD=i["login_password"])
    out = tmp_path / "sql"
    out.mkdir()
    for name, _op in DJANGO_MIGRATIONS:
        sql = sh([str(VENV / "python"), "manage.py", "sqlmigrate", "shop", name[:4]], tmp_path / "app", env)
        assert sql.startswith("BEGIN;") and "ALTER TABLE" in sql or "CREATE INDEX" in sql, sql
        (out / (name + ".sql")).write_text(sql)
    major = int(pg_db.query("SHOW server_version_num")[0][0]) // 10000
    assert lint_dir(ansible, out, "postgresql", pg_version=major) == DJANGO_PG_WARNINGS


def test_django_sqlmigrate_mysql(ansible, mysql_db, tmp_path):
    need(VENV / "django-admin", "Django")
    django_project(tmp_path / "app")
    i = mysql_db.server.info
    env = dict(DBOPS_DJANGO_ENGINE="mysql", DBOPS_DB_NAME=mysql_db.name, DBOPS_DB_HOST=i["login_host"],
               DBOPS_DB_PORT=str(i["login_port"]), DBOPS_DB_USER=i["login_user"],
               DBOPS_DB_PASSWORD=i["login_password"])
    out = tmp_path / "sql"
    out.mkdir()
    for name, _op in DJANGO_MIGRATIONS:
        sql = sh([str(VENV / "python"), "manage.py", "sqlmigrate", "shop", name[:4]], tmp_path / "app", env)
        assert "`shop_book`" in sql, sql
        (out / (name + ".sql")).write_text(sql)
    assert "FOREIGN KEY (`editor_id`)" in (out / "0003_add_nullable_fk.sql").read_text()
    version = mysql_db.query("SELECT VERSION()")[0][0]
    assert lint_dir(ansible, out, "mysql", mysql_version=version) == {("0005_rename.sql", 4, "rename-column")}


ALEMBIC_WARNINGS = {
    "postgresql": {
        ("r2.sql", 5, "missing-lock-timeout"),
        ("r3.sql", 5, "missing-lock-timeout"),
        ("r3.sql", 7, "constraint-not-valid"),
        ("r4.sql", 5, "index-not-concurrently"),
        ("r4.sql", 5, "missing-lock-timeout"),
        ("r5.sql", 5, "rename-column"),
        ("r5.sql", 5, "missing-lock-timeout"),
        ("r6.sql", 5, "missing-lock-timeout"),
    },
    # CHANGE pages page_count INTEGER NULL: a rename, and (the old type not being in these files) a possible
    # type change
    "mysql": {("r5.sql", 3, "rename-column"), ("r5.sql", 3, "column-type-rewrite")},
}


@pytest.mark.parametrize("engine, url", [("postgresql", "postgresql://"), ("mysql", "mysql+pymysql://")])
def test_alembic_offline_sql(ansible, tmp_path, engine, url):
    need(VENV / "alembic", "alembic")
    alembic_project(tmp_path / "alembic")
    out = tmp_path / "sql"
    out.mkdir()
    before = "r1"
    for rev, _body in ALEMBIC_REVISIONS:
        sql = sh([str(VENV / "alembic"), "upgrade", "%s:%s" % (before, rev), "--sql"], tmp_path / "alembic",
                 dict(DBOPS_SQLALCHEMY_URL=url))
        assert "UPDATE alembic_version SET version_num='%s'" % rev in sql, sql
        (out / (rev + ".sql")).write_text(sql)
        before = rev
    assert lint_dir(ansible, out, engine) == ALEMBIC_WARNINGS[engine]
