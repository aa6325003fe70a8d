"""method: online (pt-online-schema-change) for enum_add (an ENUM change that needs a table copy) and
ddl: online for index_ensure (an index the server can only build by copying the table: an Aria table) on
MariaDB 10.11, through Ansible: check mode is --dry-run (schema unchanged, exact statement), the change under a
concurrent writer loses and duplicates no row and never stalls it longer than lock_timeout + 0.5 s, the password
stays off argv, idempotent re-runs, refusals before connecting on other engines."""

from __future__ import annotations

import shutil

import pytest

from lock_events import ModuleRun, wait_for
from migration_batch import run_tasks
from test_column_ensure import snapshot
from test_online_ptosc import Writer

ENUM = "dbops.maintenance.enum_add"
INDEX = "dbops.maintenance.index_ensure"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


@pytest.fixture(autouse=True)
def _tool():
    assert shutil.which("pt-online-schema-change"), "percona-toolkit is missing: run scripts/bootstrap.sh"


def task(db, module, label, check=False, env=None, **args):
    t = {"name": label, "module": module, "args": {**db.params, **args}, "check": check}
    if env:
        t["env"] = env
    return t


def ok(r):
    assert not r["failed"], r.get("msg", r)
    return r


def make(db, table="t", rows=2000, engine="InnoDB"):
    db.execute("CREATE TABLE %s (id bigint AUTO_INCREMENT PRIMARY KEY, v int, s enum('new','done') NOT NULL "
               "DEFAULT 'new', pad varchar(40)) ENGINE=%s" % (table, engine))
    db.execute("INSERT INTO %s (id, v, s, pad) SELECT seq, seq, IF(seq %% 2, 'new', 'done'), 'seed' "
               "FROM seq_1_to_%d" % (table, rows))


def test_check_mode_refusals_and_idempotence(ansible, mysql_db, pg_db):
    db = mysql_db
    make(db)
    make(db, "aria", engine="Aria")
    enum = dict(table="t", column="s", values=["shipped"], after="new", method="online")
    index = dict(table="aria", name="aria_v_idx", columns=["v"], ddl="online")
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, ENUM, "enum check", check=True, **enum),
        task(db, ENUM, "enum no online", **{k: v for k, v in enum.items() if k != "method"}),
        task(db, ENUM, "enum missing tool", env={"PATH": "/nonexistent"}, **enum),
        task(db, INDEX, "index check", check=True, **index),
        task(db, INDEX, "index no online", **{k: v for k, v in index.items() if k != "ddl"}),
        task(db, INDEX, "index bad ddl", **{**index, "ddl": "fast"}),
        task(db, INDEX, "index bad online option", **{**index, "online": {"swap_tries": "many"}}),
        task(pg_db, ENUM, "enum postgresql", name="x", values=["a"], method="online"),
        task(pg_db, INDEX, "index postgresql", table="x", name="x_idx", columns=["a"], ddl="online"),
    ], output=True)
    assert snapshot(db) == before, "check mode or a refusal changed the schema"
    r = ok(res["enum check"])
    assert r["changed"] and r["queries"] == [
        "ALTER TABLE `t` MODIFY COLUMN `s` enum('new','shipped','done') NOT NULL DEFAULT 'new'"], r["queries"]
    assert "--dry-run" in r["online"]["command"] and any("Dry run complete" in x for x in r["online"]["output"])
    assert r["added"] == ["shipped"] and r["values"] == ["new", "shipped", "done"]
    assert res["enum no online"]["failed"] and "method: online" in res["enum no online"]["msg"]
    assert res["enum missing tool"]["failed"] and "apt-get install percona-toolkit" in res["enum missing tool"]["msg"]
    r = ok(res["index check"])
    assert r["changed"] and r["queries"] == ["ALTER TABLE `aria` ADD INDEX `aria_v_idx` (`v`)"], r["queries"]
    assert "--dry-run" in r["online"]["command"]
    assert not any("F=" in a or db.params["login_password"] in a for a in r["online"]["command"])
    n = res["index no online"]
    assert n["failed"] and "allow_rewrite" in n["msg"], n
    assert res["index bad ddl"]["failed"] and "ddl" in res["index bad ddl"]["msg"]
    assert res["index bad online option"]["failed"] and "swap_tries" in res["index bad online option"]["msg"]
    assert res["enum postgresql"]["failed"] and "MySQL/MariaDB only" in res["enum postgresql"]["msg"]
    assert res["index postgresql"]["failed"] and "MySQL/MariaDB only" in res["index postgresql"]["msg"]
    assert db.params["login_password"] not in res["_stdout"] + res["_stderr"]

    res = run_tasks(ansible, [task(db, ENUM, "enum", **enum), task(db, ENUM, "enum again", **enum),
                              task(db, INDEX, "index", **index), task(db, INDEX, "index again", **index)])
    assert ok(res["enum"])["changed"] and any("Successfully altered" in x for x in res["enum"]["online"]["output"])
    assert res["enum"]["values"] == ["new", "shipped", "done"]
    assert ok(res["enum again"])["changed"] is False and "online" not in res["enum again"]
    assert ok(res["index"])["changed"] and res["index"]["index"]["keys"] == ["v"]
    assert ok(res["index again"])["changed"] is False
    assert db.query("SELECT COUNT(*), SUM(s = 'new'), SUM(s = 'done') FROM t")[0] == (2000, 1000, 1000)
    assert db.query("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = 'aria'")[0][0] == "Aria"
    assert db.query("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME LIKE '\\_%'")[0][0] == 0


@pytest.mark.parametrize("which", ["enum", "index"])
def test_online_under_concurrent_writer(ansible, mysql_db, which):
    db = mysql_db
    make(db, rows=20000, engine="InnoDB" if which == "enum" else "Aria")
    lock_timeout = 1.0
    if which == "enum":
        module, args = ENUM, dict(table="t", column="s", values=["shipped"], before="done", method="online")
    else:
        module, args = INDEX, dict(table="t", name="t_v_idx", columns=["v"], ddl="online")
    writer = Writer(db, "INSERT INTO t (v, s, pad) VALUES (1, 'done', 'writer') RETURNING id")
    writer.start()
    writer.ready.wait(30)
    try:
        start = writer.completed()
        wait_for(lambda: writer.completed() >= start + 20, None, "the writer running")
        run = ModuleRun(ansible, module, dict(db.params, lock_timeout=lock_timeout, **args))
        r = run.start_and_wait()
        t0, t1 = run.started_at, run.ended_at
        after = writer.completed()
        wait_for(lambda: writer.completed() >= after + 5 or not writer.is_alive(), None, "the writer after the swap")
        alive = writer.is_alive()
    finally:
        queries = writer.finish()
    assert alive, "the writer failed: %s" % r.get("online", r.get("msg"))
    ok(r)
    assert any("Successfully altered" in x for x in r["online"]["output"]), r["online"]
    written = len(queries)
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM t")[0] == (20000 + written, 20000 + written)
    assert db.query("SELECT COUNT(*) FROM t WHERE pad = 'writer' AND s = 'done'")[0][0] == written
    if which == "enum":
        assert "enum('new','done')" not in db.query("SHOW CREATE TABLE t")[0][1]
        assert "'shipped','done'" in db.query("SHOW CREATE TABLE t")[0][1]
    else:
        assert db.query("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = 't' AND INDEX_NAME = 't_v_idx'")[0][0] == 1
    during = [(s, e) for s, e in queries if e >= t0 and s <= t1]
    assert len(during) >= 5, len(during)
    stall = max(e - s for s, e in during)
    assert stall <= lock_timeout + 0.5, "a write stalled %.2f s during pt-online-schema-change" % stall
