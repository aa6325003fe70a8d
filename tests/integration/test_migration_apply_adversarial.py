"""migration_apply against hostile input, through Ansible, one ansible-playbook per engine:
bad option types, hostile table and migration names, SQL injection in migration files and in history rows,
statements split where the engine's lexer splits them (a ';' inside a string, a trigger body), a fault midway
through a run, a modified applied file, Flyway placeholders, and the password never in the output.
"""

from __future__ import annotations

import json

import pytest
from migration_batch import run_tasks
from test_migration_apply import bad, make_db, ok

APPLY = "dbops.maintenance.migration_apply"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def q(engine, name):
    return "`%s`" % name.replace("`", "``") if engine == "mysql" else '"%s"' % name.replace('"', '""')


def dbmate_file(path, version, up, options=""):
    path.mkdir(parents=True, exist_ok=True)
    (path / ("%s_m.sql" % version)).write_text("-- migrate:up%s\n%s\n\n-- migrate:down\nSELECT 1;\n" % (options, up))


@pytest.mark.parametrize("engine", ["pg", "mariadb", "sqlite"])
def test_hostile_input(ansible, request, tmp_path, engine):  # pylint: disable=too-many-locals,too-many-statements
    dbs = {}

    def new_db(label):
        db = make_db(request, engine, tmp_path, label)
        db.execute("CREATE TABLE keep (id int)")
        dbs[label] = db
        return db

    tasks = []
    # --- bad option types and combinations: refused before anything connects or runs
    d0 = new_db("types")
    p0 = tmp_path / "types"
    dbmate_file(p0, "20240101000001", "CREATE TABLE never (id int);")
    b0 = dict(d0.params, tool="dbmate", migrations_path=str(p0), create_table=True)
    bad_args = {
        "lock_timeout_text": dict(b0, lock_timeout="soon"),
        "lock_timeout_zero": dict(b0, lock_timeout=0),
        "to_list": dict(b0, to=["20240101000001", "x"]),
        "placeholders_not_flyway": dict(b0, placeholders={"a": "b"}),
        "schema_not_pg": dict(b0, schema="public") if engine != "pg" else dict(b0, schema="no_such_schema"),
        "code_tool_without_command": dict(b0, tool="alembic"),
        "command_empty": dict(b0, command=[]),
        "to_unknown": dict(b0, to="20991231000000"),
        "tool_unknown": dict(b0, tool="liquibase"),
        "chdir_without_command": dict(b0, chdir="/tmp"),
        # without the directory the pending migrations are unknown: check mode would plan nothing
        "command_without_path": {k: v for k, v in dict(b0, tool="alembic", command=["true"]).items()
                                 if k != "migrations_path"},
        "secret_placeholder_not_flyway": dict(b0, secret_placeholders={"a": "b"}),
        "command_timeout_zero": dict(b0, command=["true"], command_timeout=0),
    }
    tasks += [dict(name="bad:" + k, module=APPLY, args=v) for k, v in bad_args.items()]

    # --- a hostile history table name, quoted everywhere
    d1 = new_db("hostile_table")
    p1 = tmp_path / "hostile_table"
    dbmate_file(p1, "20240101000001", "CREATE TABLE made (id int);")
    evil = 'h"`\'; DROP TABLE keep; --'
    tasks.append(dict(name="hostile_table", module=APPLY,
                      args=dict(d1.params, tool="dbmate", migrations_path=str(p1), create_table=True,
                                history_table=evil[:60])))

    # --- a Prisma migration directory with quotes and SQL in its name: stored verbatim in migration_name
    d2 = new_db("hostile_name")
    p2 = tmp_path / "hostile_name"
    name = "20250101000000_x'); DROP TABLE keep; --"
    (p2 / name).mkdir(parents=True)
    (p2 / name / "migration.sql").write_text("CREATE TABLE made (id int);\n")
    tasks.append(dict(name="hostile_name", module=APPLY,
                      args=dict(d2.params, tool="prisma", migrations_path=str(p2), create_table=True)))

    # --- injection in a history row: an unknown version, refused, nothing run
    d3 = new_db("hostile_row")
    p3 = tmp_path / "hostile_row"
    dbmate_file(p3, "20240101000001", "CREATE TABLE never (id int);")
    d3.execute("CREATE TABLE schema_migrations (version varchar(128) primary key)")
    d3.execute("INSERT INTO schema_migrations (version) VALUES ('1''); DROP TABLE keep; --')")
    tasks.append(dict(name="hostile_row", module=APPLY, args=dict(d3.params, tool="dbmate", migrations_path=str(p3))))

    # --- a ';' inside a string, a comment with a quote, and (SQLite) a trigger body: cut as the lexer cuts
    d4 = new_db("split")
    p4 = tmp_path / "split"
    up = ("CREATE TABLE notes (body varchar(100));\n"
          "-- it's a comment with a quote; and a semicolon\n"
          "INSERT INTO notes VALUES ('a;b'), ('x''); DROP TABLE keep; --');\n")
    if engine == "sqlite":
        up += ("CREATE TRIGGER notes_t AFTER INSERT ON notes BEGIN\n  INSERT INTO keep VALUES (1);\n"
               "  INSERT INTO keep VALUES (2);\nEND;\nINSERT INTO notes VALUES ('c');\n")
    dbmate_file(p4, "20240101000001", up)
    # lint: false - migration_lint's SQLite front-end cannot read a trigger body (a parse-error finding on its END)
    tasks.append(dict(name="split", module=APPLY,
                      args=dict(d4.params, tool="dbmate", migrations_path=str(p4), create_table=True, lint=False)))

    # --- a fault midway: 3 pending goose migrations, the second fails; the first stays, the third never runs
    d5 = new_db("midway")
    p5 = tmp_path / "midway"
    p5.mkdir()
    for n, body in ((1, "CREATE TABLE m1 (id int);"), (2, "CREATE TABLE m2 (id int);\nINSERT INTO nowhere VALUES (1);"),
                    (3, "CREATE TABLE m3 (id int);")):
        (p5 / ("%05d_m%d.sql" % (n, n))).write_text("-- +goose Up\n%s\n-- +goose Down\nSELECT 1;\n" % body)
    tasks.append(dict(name="midway", module=APPLY,
                      args=dict(d5.params, tool="goose", migrations_path=str(p5), create_table=True)))

    # --- a modified applied file (Prisma checksum): refused with the migration_resolve step, nothing run
    d6 = new_db("modified")
    p6 = tmp_path / "modified"
    (p6 / "20250101000000_a").mkdir(parents=True)
    (p6 / "20250101000000_a" / "migration.sql").write_text("CREATE TABLE a (id int);\n")
    b6 = dict(d6.params, tool="prisma", migrations_path=str(p6), create_table=True)
    tasks += [
        dict(name="modified:first", module=APPLY, args=b6),
        dict(name="modified:edit", shell="echo '-- edited' >> %s && mkdir %s && echo 'CREATE TABLE b (id int);' > %s"
             % (p6 / "20250101000000_a" / "migration.sql", p6 / "20250101000001_b",
                p6 / "20250101000001_b" / "migration.sql")),
        dict(name="modified:refused", module=APPLY, args=b6),
    ]

    # --- Flyway placeholders: a missing value refuses the run; given, replaced (checksum of the file as written)
    d7 = new_db("flyway")
    p7 = tmp_path / "flyway"
    p7.mkdir()
    (p7 / "V1__ph.sql").write_text("CREATE TABLE ${prefix}_items (id int);\n"
                                   "INSERT INTO keep VALUES (${answer});\n")
    (p7 / "R__cleanup.sql").write_text("DELETE FROM keep WHERE id < 0;\n")
    b7 = dict(d7.params, tool="flyway", migrations_path=str(p7), create_table=True,
              placeholders={"prefix": "shop", "answer": 42})
    tasks += [
        dict(name="flyway:missing", module=APPLY, args=dict(b7, placeholders={"prefix": "shop"})),
        dict(name="flyway:given", module=APPLY, args=b7),
        dict(name="flyway:again", module=APPLY, args=b7),
        dict(name="flyway:edit_repeatable", shell="echo 'DELETE FROM keep WHERE id < -1;' >> %s" % (p7 / "R__cleanup.sql")),
        dict(name="flyway:repeat", module=APPLY, args=b7),
    ]

    # --- goose StatementBegin/End: a PostgreSQL function body with semicolons is one statement
    if engine == "pg":
        d8 = new_db("goose_block")
        p8 = tmp_path / "goose_block"
        p8.mkdir()
        (p8 / "00001_fn.sql").write_text(
            "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION add_one(i int) RETURNS int AS $$\nBEGIN\n"
            "  RETURN i + 1;\nEND;\n$$ LANGUAGE plpgsql;\n-- +goose StatementEnd\n"
            "SELECT add_one(1);\n-- +goose Down\nDROP FUNCTION add_one(int);\n")
        tasks.append(dict(name="goose_block", module=APPLY,
                          args=dict(d8.params, tool="goose", migrations_path=str(p8), create_table=True)))

        # schema: a hostile schema name, put first in search_path; tables and history land in it
        d9 = new_db("schema")
        d9.execute('CREATE SCHEMA "te""nant; x"')
        p9 = tmp_path / "schema"
        dbmate_file(p9, "20240101000001", "CREATE TABLE in_tenant (id int);")
        tasks.append(dict(name="schema", module=APPLY,
                          args=dict(d9.params, tool="dbmate", migrations_path=str(p9), create_table=True,
                                    schema='te"nant; x')))

    res = run_tasks(ansible, tasks, output=True)

    # nobody's password in the output, whatever failed
    for db in dbs.values():
        if db.server is not None:
            assert db.server.info["login_password"] not in res["_stdout"] + res["_stderr"]

    for k in bad_args:
        r = res["bad:" + k]
        assert r["failed"], (k, r)
        assert not r.get("applied"), (k, r)
    assert "lock_timeout" in res["bad:lock_timeout_zero"]["msg"]
    assert "Flyway" in res["bad:placeholders_not_flyway"]["msg"]
    assert "command" in res["bad:code_tool_without_command"]["msg"]
    assert "migrations_path is required" in res["bad:command_without_path"]["msg"]
    assert "Flyway" in res["bad:secret_placeholder_not_flyway"]["msg"]
    assert "command_timeout must be more than 0" in res["bad:command_timeout_zero"]["msg"]
    assert "to=20991231000000" in res["bad:to_unknown"]["msg"] and "Nothing was run" in res["bad:to_unknown"]["msg"]
    assert not _exists(d0, "never") and not _exists(d0, "schema_migrations"), "a refused run changed the database"

    r = ok(res, "hostile_table")
    assert r["applied"][0]["name"] == "20240101000001"
    assert _exists(d1, "keep") and _exists(d1, "made") and _exists(d1, evil[:60])
    assert d1.query("SELECT version FROM %s" % q(d1.engine, evil[:60])) == [("20240101000001",)]

    r = ok(res, "hostile_name")
    assert [a["name"] for a in r["applied"]] == [name]
    assert _exists(d2, "keep") and _exists(d2, "made")
    assert d2.query('SELECT migration_name FROM %s' % q(d2.engine, "_prisma_migrations")) == [(name,)]

    r = bad(res, "hostile_row", "not clean", "unknown", "no migration was run")
    assert _exists(d3, "keep") and not _exists(d3, "never")

    r = ok(res, "split")
    assert sorted(v for (v,) in d4.query("SELECT body FROM notes")) == sorted(
        ["a;b", "x'); DROP TABLE keep; --"] + (["c"] if engine == "sqlite" else []))
    assert _exists(d4, "keep")
    if engine == "sqlite":
        assert sorted(v for (v,) in d4.query("SELECT id FROM keep")) == [1, 2], "the trigger body was cut"

    r = bad(res, "midway", "nowhere")
    assert [a["name"] for a in r["applied"]] == ["1"], r["applied"]
    assert r["failed_migration"]["name"] == "2" and "nowhere" in r["failed_migration"]["statement"], r["failed_migration"]
    assert r["pending"] == ["2", "3"], r["pending"]
    assert _exists(d5, "m1") and not _exists(d5, "m3")
    assert _exists(d5, "m2") is (engine == "mariadb"), "goose runs each migration in a transaction"

    ok(res, "modified:first")
    r = bad(res, "modified:refused", "modified", "migration_resolve", "no migration was run")
    assert not _exists(d6, "b")

    r = bad(res, "flyway:missing", "placeholder ${answer}", "Nothing was run")
    assert not r.get("applied") and not any("shop_items" in x for x in r.get("queries", [])), r
    r = ok(res, "flyway:given")
    assert _exists(d7, "shop_items") and d7.query("SELECT id FROM keep") == [(42,)]
    assert [a["name"] for a in r["applied"]] == ["1", "R__cleanup"], r["applied"]
    r = ok(res, "flyway:again")
    assert r["changed"] is False and r["applied"] == [], r
    r = ok(res, "flyway:repeat")
    assert [a["name"] for a in r["applied"]] == ["R__cleanup"], r["applied"]
    rows = d7.query("SELECT installed_rank, version, script, success FROM flyway_schema_history ORDER BY 1")
    assert [(x[0], x[1], x[2], bool(x[3])) for x in rows] == [
        (1, "1", "V1__ph.sql", True), (2, None, "R__cleanup.sql", True), (3, None, "R__cleanup.sql", True)], rows

    if engine == "pg":
        r = ok(res, "goose_block")
        # StatementBegin/End kept the function body (semicolons inside) one statement, then SELECT: two
        assert sum(1 for x in r["queries"] if "add_one" in x) == 2, r["queries"]
        assert "plan" not in r, "the plan is returned in check mode only"
        assert d8.query("SELECT add_one(41)") == [(42,)]
        ok(res, "schema")
        assert sorted(d9.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", ['te"nant; x'])) == [
            ("in_tenant",), ("schema_migrations",)]
        assert not _exists(d9, "in_tenant")


def _exists(db, table):
    if db.engine == "sqlite":
        return bool(db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]))
    if db.engine == "mysql":
        return bool(db.query("SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
                             "AND table_name = %s", [table]))
    return bool(db.query("SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = %s", [table]))


def test_flyway_secret_placeholders_are_masked(ansible, tmp_path):
    """A placeholder given in secret_placeholders is replaced like the others, and its value is masked in the plan,
    the queries and the messages; a name given in both options is refused before anything runs."""
    import sqlite3
    dbfile = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(dbfile)
    conn.execute("CREATE TABLE creds (who text, secret text)")
    conn.commit()
    conn.close()
    path = tmp_path / "flyway"
    path.mkdir()
    (path / "V1__creds.sql").write_text("INSERT INTO ${table} VALUES ('app', '${app_secret}');\n")
    secret = "Zq-9f3-placeholder-secret"
    base = dict(engine="sqlite", database=str(dbfile), tool="flyway", migrations_path=str(path), create_table=True,
                placeholders={"table": "creds"}, secret_placeholders={"app_secret": secret})
    res = run_tasks(ansible, [
        dict(name="both", module=APPLY, args=dict(base, placeholders={"table": "creds", "app_secret": "x"})),
        dict(name="check", module=APPLY, args=base, check=True),
        dict(name="run", module=APPLY, args=base),
    ])
    r = bad(res, "both", "both placeholders and secret_placeholders")
    r = ok(res, "check")
    assert any("INSERT INTO creds VALUES ('app', '********')" in s for p in r["plan"] for s in p["statements"]), r
    r = ok(res, "run")
    assert [a["file"] for a in r["applied"]] == ["V1__creds.sql"], r
    assert secret not in json.dumps(res), "a secret placeholder reached the output"
    # refused on a wrong type of another option, with -vvvv: the invocation shown does not carry it either
    r = ansible.run(APPLY, dict(base, lock_timeout="soon"), verbosity=4, expect_failure=True)
    assert "lock_timeout" in r["msg"] and secret not in r.stdout + r.stderr, "a secret placeholder in -vvvv output"
    conn = sqlite3.connect(dbfile)
    assert conn.execute("SELECT who, secret FROM creds").fetchall() == [("app", secret)]
    conn.close()


@pytest.mark.parametrize("tool", ["goose", "flyway", "dbmate"])
def test_out_of_order_pending_as_the_tool_treats_it(ansible, tmp_path, tool):
    """Migrations 1 and 3 applied, then 2 appears (a merged branch): goose (>= 3.3, without -allow-missing) and
    Flyway (validateOnMigrate, without -outOfOrder) refuse to run, and so does migration_apply, naming the
    tool's flag; out_of_order: true applies it. dbmate applies it anyway."""
    from test_migration_apply import write_migration
    import sqlite3
    dbfile = tmp_path / "app.sqlite3"
    sqlite3.connect(dbfile).close()
    path = tmp_path / tool
    path.mkdir()
    write_migration(tool, path, 1, "CREATE TABLE ooo_1 (id int);")
    write_migration(tool, path, 3, "CREATE TABLE ooo_3 (id int);")
    base = dict(engine="sqlite", database=str(dbfile), tool=tool, migrations_path=str(path), create_table=True)
    res = run_tasks(ansible, [dict(name="first", module=APPLY, args=base)])
    assert len(ok(res, "first")["applied"]) == 2
    write_migration(tool, path, 2, "CREATE TABLE ooo_2 (id int);")
    res = run_tasks(ansible, [
        dict(name="default", module=APPLY, args=base),
        dict(name="check", module=APPLY, args=dict(base, out_of_order=True), check=True),
        dict(name="allowed", module=APPLY, args=dict(base, out_of_order=True)),
        dict(name="again", module=APPLY, args=base),
    ])
    conn = sqlite3.connect(dbfile)
    made = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ooo_%'")}
    conn.close()
    if tool == "dbmate":
        r = ok(res, "default")
        assert [a["name"] for a in r["applied"]] == ["20240101000002"], r
    else:
        flag = {"goose": "-allow-missing", "flyway": "-outOfOrder=true"}[tool]
        bad(res, "default", "older than the latest applied one (3)", flag, "out_of_order: true", "Nothing was run")
        assert ok(res, "check")["pending"] == ["2"]
        r = ok(res, "allowed")
        assert [a["name"] for a in r["applied"]] == ["2"] and r["pending"] == [], r
    r = ok(res, "again")
    assert r["changed"] is False and r["applied"] == [], r
    assert made == {"ooo_1", "ooo_2", "ooo_3"}, made
