"""The harness itself: real servers, fresh databases, no password leaks, ansible-playbook runs."""

import os
import re
import subprocess

import pytest

EXPECTED_VERSION = {
    "pg15": r"^PostgreSQL 15\.",
    "pg16": r"^PostgreSQL 16\.",
    "mariadb": r"^10\.11\.\d+-MariaDB",
}


def test_servers_fixture_has_all_servers(servers):
    # Exactly the servers asked for: all three unless DBOPS_SERVERS narrows them (never none).
    wanted = [n.strip() for n in os.environ.get("DBOPS_SERVERS", "").split(",") if n.strip()]
    expected = set(wanted or ["pg15", "pg16", "mariadb"])
    assert expected and expected <= {"pg15", "pg16", "mariadb"}, wanted
    assert set(servers) == expected, sorted(servers)
    for name, server in servers.items():
        assert server.name == name
        assert server.engine == ("mysql" if name == "mariadb" else "postgresql")
        params = server.params()
        assert set(params) == {"engine", "login_host", "login_port", "login_user",
                               "login_password", "database"}
        assert params["login_host"] == "127.0.0.1"
        assert params["login_user"] == "dbops_admin"
        assert server.params("other")["database"] == "other"


def test_version_over_tcp_with_password(any_server):
    (version,), = any_server.query(None, "SELECT version()")
    assert re.match(EXPECTED_VERSION[any_server.name], version), version


def test_wrong_password_is_rejected(any_server):
    bad = dict(any_server.info, login_password="not-the-password")
    with pytest.raises(Exception) as exc:
        type(any_server)(any_server.name, bad).connect()
    assert re.search(r"password|Access denied", str(exc.value)), exc.value


def test_fresh_database_is_empty(db):
    assert db.name.startswith("dbops_t_")
    if db.engine == "postgresql":
        rows = db.query("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
        assert db.query("SELECT current_database()") == [(db.name,)]
    else:
        rows = db.query("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = %s", (db.name,))
        assert db.query("SELECT DATABASE()") == [(db.name,)]
    assert rows == []
    db.execute("CREATE TABLE t (id integer PRIMARY KEY)")
    db.execute("INSERT INTO t (id) VALUES (%s)", (1,))
    assert db.query("SELECT id FROM t") == [(1,)]


def test_databases_are_isolated(pg_db, pg_server):
    other = pg_server.create_database()
    try:
        pg_db.execute("CREATE TABLE only_here (x int)")
        assert pg_server.query(other, "SELECT to_regclass('only_here')") == [(None,)]
    finally:
        pg_server.drop_database(other)
    assert pg_server.query(None, "SELECT count(*) FROM pg_database WHERE datname = %s",
                           (other,)) == [(0,)]


def test_mysql_db_fixture(mysql_db, mariadb):
    assert mysql_db.server is mariadb
    assert mysql_db.params["engine"] == "mysql"
    with mysql_db.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT @@character_set_server, @@max_connections")
            assert cur.fetchone() == ("utf8mb4", 300)


def test_sqlite_db_fixture(sqlite_db):
    assert sqlite_db.params == {"engine": "sqlite", "database": sqlite_db.name}
    assert sqlite_db.query("SELECT name FROM sqlite_master") == []
    sqlite_db.execute("CREATE TABLE t (x)")
    sqlite_db.execute("INSERT INTO t VALUES (?)", (42,))
    assert sqlite_db.query("SELECT x FROM t") == [(42,)]


def test_server_settings(pg_server):
    settings = dict(pg_server.query(
        None, "SELECT name, setting FROM pg_settings WHERE name IN "
              "('fsync', 'max_connections', 'password_encryption', 'server_encoding')"))
    assert settings == {"fsync": "off", "max_connections": "200",
                        "password_encryption": "scram-sha-256", "server_encoding": "UTF8"}
    assert pg_server.query(None, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") \
        == [(True,)]


def test_admin_password_not_on_any_command_line(servers):
    args = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True,
                          check=True).stdout
    for server in servers.values():
        assert ("mariadbd" if server.engine == "mysql" else "postgres") in args
        assert server.info["login_password"] not in args, server.name


def test_ansible_runner_ping(ansible):
    result = ansible.run("ansible.builtin.ping", {})
    assert result["ping"] == "pong"
    assert result["changed"] is False
    assert not result.get("failed")
    assert result.rc == 0


@pytest.mark.parametrize("unsafe", [False, True], ids=["templated", "unsafe"])
def test_ansible_runner_passes_args_verbatim(ansible, unsafe):
    weird = "it's: \"quoted\"; DROP TABLE x; -- 🚀 ünï\n\tyes\x7f"
    args = {"msg": [weird, "yes", "1.0", "null", "", "  spaced  ", "# not a comment"]}
    if unsafe:
        args["msg"].append("{{ not_templated }}")
    result = ansible.run("ansible.builtin.debug", args, unsafe_args=unsafe, expect_failure=False)
    assert result["msg"] == args["msg"]
    assert result["failed"] is False and result["changed"] is False


def test_ansible_runner_reports_failure(ansible):
    result = ansible.run("ansible.builtin.fail", {"msg": "boom"}, expect_failure=True)
    assert result["failed"] is True
    assert result["msg"] == "boom"


def test_ansible_runner_playbook(ansible):
    res = ansible.playbook(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n        msg: 'hello {{ who }}'\n",
        extra_vars={"who": "harness"})
    assert res.rc == 0, res.stdout + res.stderr
    assert "hello harness" in res.stdout


# --------------------------------------------------------------------------
# PlaybookSession: many module runs in one ansible-playbook (ansible_run.py)
# --------------------------------------------------------------------------

def _starts(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_session_runs_each_task_in_order_in_one_ansible_playbook(ansible, tmp_path, monkeypatch):
    from migration_batch import run_tasks  # pylint: disable=import-outside-toplevel
    count = tmp_path / "starts"
    monkeypatch.setenv("DBOPS_COUNT_PLAYBOOKS", str(count))
    mark = tmp_path / "mark"
    with ansible.session() as session:
        first = session.run("ansible.builtin.command", {"cmd": "echo one"}, expect_failure=False)
        # check mode and diff are the task's: the file is not written, the diff is reported
        check = session.run("ansible.builtin.copy", {"content": "x\n", "dest": str(mark)}, check=True, diff=True)
        assert check.changed and not mark.exists() and check["diff"][0]["after"] == "x\n"
        failed = session.run("ansible.builtin.command", {"cmd": "false"}, expect_failure=True)
        # each result is back before the test goes on: the next task sees what the test did meanwhile
        mark.write_text("between\n")
        second = session.run("ansible.builtin.command", {"cmd": "cat %s" % mark}, expect_failure=False)
        batch = run_tasks(session, [{"name": "a", "shell": "echo a"},
                                    {"name": "b", "module": "ansible.builtin.command", "args": {"cmd": "echo b"}}])
        templated = session.run("ansible.builtin.debug", {"msg": "{{ 40 + 2 }}"}, unsafe_args=True)
        with pytest.raises(AssertionError, match="no output of its own"):
            print(first.stdout)
        assert _starts(count) == 1
    assert first["stdout"] == "one" and failed.failed and failed["rc"] == 1
    assert second["stdout"] == "between"
    assert batch["a"]["stdout"] == "a" and batch["b"]["stdout"] == "b"
    assert templated["msg"] == "{{ 40 + 2 }}"
    assert session._proc is None  # pylint: disable=protected-access  # close() ended it (rc 0, or it raises)


def test_session_restarts_after_max_steps_and_after_a_broken_playbook(ansible, tmp_path, monkeypatch):
    count = tmp_path / "starts"
    monkeypatch.setenv("DBOPS_COUNT_PLAYBOOKS", str(count))
    with ansible.session() as session:
        session.MAX_STEPS = 3  # two tasks per ansible-playbook
        for i in range(3):
            assert session.run("ansible.builtin.command", {"cmd": "echo %d" % i})["stdout"] == str(i)
        assert _starts(count) == 2
        # a task file ansible-playbook cannot load ends that playbook: seen, reported, and the next run restarts
        with pytest.raises(AssertionError, match="session broke"):
            session.run("dbops.maintenance.no_such_module", {})
        assert session.run("ansible.builtin.command", {"cmd": "echo after"})["stdout"] == "after"
        assert _starts(count) == 3


def test_session_falls_back_to_a_fresh_playbook_when_busy_or_verbose(ansible, tmp_path, monkeypatch):
    count = tmp_path / "starts"
    monkeypatch.setenv("DBOPS_COUNT_PLAYBOOKS", str(count))
    with ansible.session() as session:
        session.run("ansible.builtin.command", {"cmd": "true"}, expect_failure=False)
        with session._lock:  # pylint: disable=protected-access  # another thread's task is running in it
            busy = session.run("ansible.builtin.command", {"cmd": "echo fresh"}, expect_failure=False)
        verbose = session.run("ansible.builtin.command", {"cmd": "echo v"}, verbosity=2, expect_failure=False)
        assert _starts(count) == 3
    # fresh runs have their own output
    assert busy["stdout"] == "fresh" and "fresh" in busy.stdout
    assert verbose["stdout"] == "v" and busy.rc == 0
