"""migration_apply's command path through Ansible: the connection tokens the command is told its database by, and
the bound on the command's time, its whole process group included.

* tokens: {database_url} in environment reaches the command as the module's own connection (the password
  percent-encoded in it, and masked everywhere in the output); {database} etc. in argv; {password} and
  {database_url} in argv refused before anything runs; a command that exits 0 without touching this database's
  history gets a warning.
* process group: a command killed on command_timeout takes its background child with it; a command that exits
  while its child keeps the output pipe open returns within the grace period, the child stopped too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time

import pytest

from migration_batch import pg16_db, run_tasks

APPLY = "dbops.maintenance.migration_apply"

# A "tool" that records the dbmate row itself through the URL it was given, and prints its argv.
FAKE_TOOL = (
    "import os, sys\n"
    "print('argv=' + ' '.join(sys.argv[1:]))\n"
    "print('url=' + os.environ['APP_URL'])\n"
    "url = os.environ['APP_URL']\n"
    "if url.startswith('sqlite:///'):\n"
    "    import sqlite3\n"
    "    c = sqlite3.connect(url[len('sqlite:///'):])\n"
    "    c.execute('CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) primary key)')\n"
    "    c.execute(\"INSERT INTO schema_migrations (version) VALUES ('20240101000002')\")\n"
    "    c.commit()\n"
    "else:\n"
    "    import psycopg\n"
    "    c = psycopg.connect(url, autocommit=True)\n"
    "    c.execute(\"INSERT INTO schema_migrations (version) VALUES ('20240101000002')\")\n"
)


def dbmate_dir(tmp_path):
    d = tmp_path / "cmd"
    d.mkdir()
    (d / "20240101000002_x.sql").write_text("-- migrate:up\nSELECT 1;\n-- migrate:down\n")
    return d


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    with ansible.session() as session:
        yield session


def test_tokens_tell_the_command_this_database(ansible, request, tmp_path):
    db = pg16_db(request)
    server, name = db.server, db.name
    db.execute("CREATE TABLE schema_migrations (version varchar(128) primary key)")
    tool = tmp_path / "fake_tool.py"
    tool.write_text(FAKE_TOOL)
    marker = tmp_path / "ran"
    path = dbmate_dir(tmp_path)
    base = dict(db.params, tool="dbmate", migrations_path=str(path))
    cmd = [sys.executable, str(tool), "db={database}", "at={host}:{port}", "as={user}", "{other}"]
    env = dict(APP_URL="{database_url}")
    tasks = [
        dict(name="check", module=APPLY, check=True, args=dict(base, command=cmd, environment=env)),
        dict(name="argv_password", module=APPLY,
             args=dict(base, command=["sh", "-c", "touch %s" % marker, "{password}"], environment=env)),
        dict(name="argv_url", module=APPLY,
             args=dict(base, command=["sh", "-c", "touch %s" % marker, "x={database_url}"])),
        dict(name="up", module=APPLY, args=dict(base, command=cmd, environment=env)),
    ]
    res = run_tasks(ansible, tasks)
    i = server.info
    r = res["check"]
    assert not r["failed"] and r["changed"] and r["pending"] == ["20240101000002"], r
    assert r["command"][2:] == ["db=%s" % name, "at=%s:%s" % (i["login_host"], i["login_port"]),
                                "as=%s" % i["login_user"], "{other}"], r["command"]
    for key in ("argv_password", "argv_url"):
        r = res[key]
        assert r["failed"] and "in its arguments" in r["msg"] and "environment" in r["msg"], r
    assert not marker.exists(), "a refused command ran"
    r = res["up"]
    assert not r["failed"], r
    assert [a["name"] for a in r["applied"]] == ["20240101000002"] and r["pending"] == [], r
    assert "argv=db=%s at=%s:%s as=%s {other}" % (name, i["login_host"], i["login_port"], i["login_user"]) \
        in r["stdout"], r["stdout"]
    # the URL reached the tool (it connected with it) and is masked in what the module returns
    assert "url=********" in r["stdout"], r["stdout"]
    assert i["login_password"] not in json.dumps(res), "the password reached the output"
    # -vvvv, check mode: the invocation and the substituted argv show no password either
    r = ansible.run(APPLY, dict(base, command=cmd, environment=env), check=True, verbosity=4, expect_failure=False)
    assert i["login_password"] not in r.stdout + r.stderr, "the password reached the -vvvv output"
    assert db.query("SELECT version FROM schema_migrations") == [("20240101000002",)]


def test_sqlite_url_and_a_command_that_misses_this_database(ansible, tmp_path):
    dbfile = tmp_path / "app.sqlite3"
    other = tmp_path / "other.sqlite3"
    for f in (dbfile, other):
        sqlite3.connect(f).close()
    tool = tmp_path / "fake_tool.py"
    tool.write_text(FAKE_TOOL)
    path = dbmate_dir(tmp_path)
    base = dict(engine="sqlite", database=str(dbfile), tool="dbmate", migrations_path=str(path), create_table=True)
    res = run_tasks(ansible, [
        dict(name="elsewhere", module=APPLY,
             args=dict(base, command=[sys.executable, str(tool)], environment=dict(APP_URL="sqlite:///%s" % other))),
        dict(name="here", module=APPLY,
             args=dict(base, command=[sys.executable, str(tool)], environment=dict(APP_URL="{database_url}"))),
    ])
    r = res["elsewhere"]
    assert not r["failed"] and r["changed"] is False and r["pending"] == ["20240101000002"], r
    assert any("did not change" in w and "{database_url}" in w for w in r.get("warnings", [])), r
    r = res["here"]
    assert not r["failed"] and r["changed"] and r["pending"] == [], r
    assert "url=sqlite:///%s" % dbfile in r["stdout"], r["stdout"]
    assert not r.get("warnings"), r
    conn = sqlite3.connect(dbfile)
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [("20240101000002",)]
    conn.close()


def state_of(pid):
    """The process's state letter (Z: exited, not yet reaped), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_command_timeout_stops_the_whole_process_group(ansible, tmp_path):
    dbfile = tmp_path / "app.sqlite3"
    sqlite3.connect(dbfile).close()
    path = dbmate_dir(tmp_path)
    killed_pid, held_pid = tmp_path / "killed.pid", tmp_path / "held.pid"
    base = dict(engine="sqlite", database=str(dbfile), tool="dbmate", migrations_path=str(path), create_table=True)
    res = run_tasks(ansible, [
        # the wrapper waits for its child: killed on the timeout, the child with it
        dict(name="timeout", module=APPLY, args=dict(
            base, command_timeout=1,
            command=["sh", "-c", "sleep 300 & echo $! > %s; echo started; wait" % killed_pid])),
        # the wrapper exits at once, its child keeps stdout open: back after the grace period, the child stopped
        dict(name="pipe_held", module=APPLY, args=dict(
            base, command_timeout=120,
            command=["sh", "-c", "sleep 300 & echo $! > %s; echo left" % held_pid])),
    ])
    r = res["timeout"]
    assert r["failed"] and r["rc"] is None and "killed with its process group" in r["msg"], r
    assert "not retried" in r["msg"] and "started" in r["stdout"], r
    r = res["pipe_held"]
    assert not r["failed"] and r["rc"] == 0 and "left" in r["stdout"], r
    assert 4.5 < r["duration"] < 60, r["duration"]  # it waited the grace period, not command_timeout
    for f in (killed_pid, held_pid):  # signalled: dead now or within moments (a survivor would sleep 300 s)
        pid = int(f.read_text())
        deadline = time.monotonic() + 20
        while state_of(pid) not in (None, "Z", "X") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state_of(pid) in (None, "Z", "X"), (f.name, pid, state_of(pid))
    assert os.path.exists(dbfile)
