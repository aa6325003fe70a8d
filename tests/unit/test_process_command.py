"""The bounded command runner (process.run_bounded, and run_tool on it) and migration_apply's command tokens:
a timeout stops the whole process group, a child that holds the pipes after its parent exited is stopped too;
the tokens give the connection (socket forms included), hostile values stay inside their token, and the secret
tokens are refused in argv."""

from __future__ import annotations

import os
import time
from urllib.parse import unquote, urlsplit

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.backup.pipeline import run_tool
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import command
from ansible_collections.dbops.maintenance.plugins.module_utils.process import run_bounded


def dead(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def gone(pid):
    """The process was signalled: it dies (a zombie or reaped) - waited for, as the kernel delivers the signal
    asynchronously; a process nobody stopped would live on for its 300 s."""
    deadline = time.monotonic() + 20
    while not dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_run_bounded_returns_rc_and_both_outputs():
    rc, out, err = run_bounded(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (rc, out, err) == (3, b"out\n", b"err\n")
    rc, out, err = run_bounded(["sh", "-c", "echo out; echo err >&2"], 30, merge_stderr=True)
    assert rc == 0 and out == b"out\nerr\n" and err == b""


def test_timeout_stops_the_group_and_keeps_the_output(tmp_path):
    pidfile = tmp_path / "pid"
    rc, out, _err = run_bounded(["sh", "-c", "sleep 300 & echo $! > %s; echo started; wait" % pidfile], 0.5,
                                grace=1)
    assert rc is None and out == b"started\n"
    assert gone(int(pidfile.read_text()))


def test_a_child_holding_the_pipe_is_stopped_after_the_grace(tmp_path):
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    rc, out, _err = run_bounded(["sh", "-c", "sleep 300 & echo $! > %s; echo left" % pidfile], 120, grace=0.5)
    assert rc == 0 and out == b"left\n" and time.monotonic() - t0 < 60
    assert gone(int(pidfile.read_text()))


def test_run_tool_says_it_stopped_the_tool():
    with pytest.raises(DbopsError, match=r"sleep did not finish within 0.3 s and was stopped"):
        run_tool(["sleep", "30"], timeout=0.3)
    with pytest.raises(DbopsError, match="Cannot run"):
        run_tool([os.path.join(os.sep, "nonexistent", "tool")], timeout=5)


def test_tokens_of_a_tcp_and_a_socket_connection():
    v = command.token_values("postgresql", dict(login_host="db.internal", login_port=5433, login_user="app@x",
                                                login_password="p@ss:/w?#%{user}", database="shop"))
    url = urlsplit(v["database_url"])
    assert url.scheme == "postgresql" and url.hostname == "db.internal" and url.port == 5433
    assert unquote(url.username) == "app@x" and unquote(url.password) == "p@ss:/w?#%{user}"
    # one pass: a password that looks like a token is not replaced again
    assert command.substitute("{password}|{user}", v) == "p@ss:/w?#%{user}|app@x"
    v = command.token_values("postgresql", dict(login_unix_socket="/run/postgresql", login_user="u", database="d"))
    assert v["database_url"] == "postgresql://u@/d?host=/run/postgresql" and v["host"] == "/run/postgresql"
    v = command.token_values("mysql", dict(login_unix_socket="/run/mysqld/mysqld.sock", database="d"))
    assert v["database_url"] == "mysql://localhost/d?unix_socket=/run/mysqld/mysqld.sock"
    assert command.token_values("sqlite", dict(database="/srv/app.db"))["database_url"] == "sqlite:////srv/app.db"


def test_secret_tokens_are_refused_in_argv():
    values = command.token_values("mysql", dict(login_password="pw", database="d"))
    assert command.command_argv(dict(command=["tool", "--db={database}", "{other}"]), values) == \
        ["tool", "--db=d", "{other}"]
    for arg in ("{password}", "--url={database_url}"):
        with pytest.raises(DbopsError, match="in its arguments"):
            command.command_argv(dict(command=["tool", arg]), values)
