"""column_ensure method: online on MariaDB 10.11: pt-online-schema-change (Debian percona-toolkit 3.2.1).

A copy-requiring change under a concurrent writer loses and duplicates no row and never stalls the
writer longer than the swap's lock wait + 0.5 s; check mode is --dry-run (the table is not
touched); a missing tool and the tool's own refusals (triggers, no key) fail clearly with nothing
changed; the password never reaches argv nor the output.
"""

from __future__ import annotations

import shutil
import time

import pymysql
import pytest

from lock_events import ModuleRun, Reader, wait_for
from migration_batch import run_tasks
from test_column_ensure import snapshot

MODULE = "dbops.maintenance.column_ensure"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


@pytest.fixture(autouse=True)
def _tool():
    assert shutil.which("pt-online-schema-change"), "percona-toolkit is missing: run scripts/bootstrap.sh"


def merged(base, **over):
    """base with some options replaced (a new dict)."""
    return {**base, **over}


def task(db, label, check=False, env=None, **args):
    t = {"name": label, "module": MODULE, "args": {**db.params, **args}, "check": check}
    if env:
        t["env"] = env
    return t


def ok(r):
    assert not r["failed"], r.get("msg", r)
    return r


class Writer(Reader):
    """The application's writer: each INSERT retried on a deadlock (1213) or lock wait timeout (1205), as InnoDB
    asks every application to; one (start, end) per row written, retries included in its time."""

    def __init__(self, db, sql):
        super().__init__(db, sql)
        self.retried = 0

    def run(self):
        conn = self.db.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT CONNECTION_ID()")
            self.session_id = cur.fetchone()[0]
            self.ready.set()
            while not self.stop.is_set():
                t0 = time.monotonic()
                while True:
                    try:
                        cur.execute(self.sql)
                        cur.fetchall()
                        break
                    except pymysql.err.OperationalError as e:
                        if e.args[0] not in (1205, 1213):
                            raise
                        self.retried += 1
                self.queries.append((t0, time.monotonic()))
                self.stop.wait(0.01)
        finally:
            self.ready.set()
            conn.close()


def make(db, table="t", rows=2000, key=True):
    db.execute("CREATE TABLE %s (id bigint %s, v int, pad varchar(40)) ENGINE=InnoDB"
               % (table, "AUTO_INCREMENT PRIMARY KEY" if key else ""))
    db.execute("INSERT INTO %s (id, v, pad) SELECT seq, seq, 'seed' FROM seq_1_to_%d" % (table, rows))


def test_online_check_mode_missing_tool_and_refusals(ansible, mysql_db):
    db = mysql_db
    make(db)
    make(db, "trig")
    db.execute("CREATE TRIGGER trig_bi BEFORE INSERT ON trig FOR EACH ROW SET NEW.v = NEW.v")
    make(db, "nokey", key=False)
    change = dict(column="v", type="bigint", nullable=False, alter=True, method="online")
    before = snapshot(db)
    res = run_tasks(ansible, [
        task(db, "check", check=True, table="t", **change),
        task(db, "missing tool", env={"PATH": "/nonexistent"}, table="t", **change),
        task(db, "triggers", table="trig", **change),
        task(db, "no key", table="nokey", **change),
        task(db, "postgresql only", table="t", **merged(change, engine="postgresql")),
    ], output=True)
    assert snapshot(db) == before, "check mode or a refusal changed the schema"
    r = ok(res["check"])
    assert r["changed"] is True and r["queries"] == ["ALTER TABLE `t` MODIFY COLUMN `v` bigint NOT NULL"], r["queries"]
    assert "--dry-run" in r["online"]["command"] and any("Dry run complete" in x for x in r["online"]["output"]), r
    assert not any("F=" in a for a in r["online"]["command"]), r["online"]["command"]
    m = res["missing tool"]
    assert m["failed"] and "apt-get install percona-toolkit" in m["msg"], m
    t = res["triggers"]
    assert t["failed"] and "trigger" in t["msg"].lower() and "unchanged" in t["msg"], t["msg"]
    n = res["no key"]
    assert n["failed"] and ("primary key" in n["msg"].lower() or "unique index" in n["msg"].lower()), n["msg"]
    assert res["postgresql only"]["failed"] and "MySQL/MariaDB only" in res["postgresql only"]["msg"]
    assert db.params["login_password"] not in res["_stdout"] + res["_stderr"]
    assert db.query("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME LIKE '\\_%'")[0][0] == 0


def test_online_under_concurrent_writer_loses_no_row(ansible, mysql_db):
    db = mysql_db
    make(db, rows=20000)
    lock_timeout = 1.0
    writer = Writer(db, "INSERT INTO t (v, pad) VALUES (1, 'writer') RETURNING id")
    writer.start()
    writer.ready.wait(30)
    try:
        start = writer.completed()
        wait_for(lambda: writer.completed() >= start + 20, None, "the writer running")
        run = ModuleRun(ansible, MODULE, dict(db.params, table="t", column="v", type="bigint", nullable=False,
                                              alter=True, method="online", lock_timeout=lock_timeout))
        r = run.start_and_wait()
        t0, t1 = run.started_at, run.ended_at
        after = writer.completed()
        wait_for(lambda: writer.completed() >= after + 5 or not writer.is_alive(), None, "the writer after the swap")
        alive = writer.is_alive()
    finally:
        queries = writer.finish()
    assert alive, "the writer failed (an error on its connection): %s" % r.get("online", r.get("msg"))
    ok(r)
    assert any("Successfully altered" in x for x in r["online"]["output"]), r["online"]
    written = len(queries)
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM t")[0] == (20000 + written, 20000 + written)
    assert db.query("SELECT COUNT(*) FROM t WHERE pad = 'writer'")[0][0] == written
    assert db.query("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = 't' AND COLUMN_NAME = 'v'")[0][0] == "bigint"
    during = [(s, e) for s, e in queries if e >= t0 and s <= t1]
    assert len(during) >= 5, len(during)
    stall = max(e - s for s, e in during)
    assert stall <= lock_timeout + 0.5, "a write stalled %.2f s during pt-online-schema-change" % stall
