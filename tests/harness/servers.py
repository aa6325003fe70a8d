"""Real database servers for the integration tests.

Starts PostgreSQL 15 (Debian), PostgreSQL 16 (binaries of the ``pgserver``
wheel) and MariaDB 10.11 (Debian), each in its own data directory under a
state directory, on 127.0.0.1 and a free TCP port, with a password-protected
admin account ``dbops_admin``.  The connection details are written to
``<state-dir>/servers.json`` (mode 0600).

Importable (``start``, ``stop``, ``status``, ``load_info``) and a CLI::

    .venv/bin/python tests/harness/servers.py start  --state-dir DIR [--only pg15,pg16,mariadb]
    .venv/bin/python tests/harness/servers.py stop   --state-dir DIR
    .venv/bin/python tests/harness/servers.py status --state-dir DIR

Several instances of the same kind, each on its own loopback address (for a
fleet, e.g. the molecule scenarios), started in parallel::

    servers.py start --state-dir DIR \
        --instances pg15a=pg15@127.0.0.11,pg16a=pg16@127.0.0.13,maria1=mariadb@127.0.0.21 \
        [--password-file FILE]

An instance ``NAME=KIND@ADDRESS`` (KIND one of pg15, pg16, mariadb; ADDRESS in
127.0.0.0/8) listens on ADDRESS at the kind's default port (5432 / 3306) when
nothing listens there, else on a free port of ADDRESS; servers.json records it
under NAME with ``kind`` and ``login_host`` = ADDRESS.  ``--password-file``
(a 0600 file holding one password, used by every server of that start) keeps
the password out of the state dir: servers.json then records
``password_file`` and ``load_info`` reads the password from it.  ``stop``
without ``--only`` stops every recorded server and instance.

``--state-dir`` defaults to ``$DBOPS_SERVERS_STATE``.  Standard library only,
so it also runs under a plain ``python3``.  Passwords never appear on a
command line: initdb reads a 0600 ``--pwfile``, MariaDB creates the account
from a 0600 ``--init-file``, and the clients get the password from
``PGPASSWORD`` or a 0600 ``--defaults-file``.

PostgreSQL refuses to run as root; when this runs as root, the PostgreSQL
servers run as the unprivileged system user ``dbopstest`` (created on demand)
through ``runuser``.  MariaDB runs with ``--user=root`` in that case.

The code is in ``tests/harness/dbops_servers/``, one module per server kind: ``common`` (constants,
errors, process/port/file helpers, the unprivileged user), ``pgserver`` (where the PostgreSQL 15 and
pgserver-wheel PostgreSQL 16 binaries are), ``postgresql``, ``mariadb``, ``state`` (start / stop /
status, servers.json).  This file is the CLI and keeps every name importable from here, as before;
setting one of them here (a test points ``MARIADBD`` at a wrapper) sets it where the code reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # run as a script, imported as harness.servers, or loaded by file path
    sys.path.insert(0, _HERE)

import dbops_servers.common  # noqa: E402  pylint: disable=wrong-import-position
import dbops_servers.mariadb  # noqa: E402  pylint: disable=wrong-import-position
import dbops_servers.pgserver  # noqa: E402  pylint: disable=wrong-import-position
import dbops_servers.postgresql  # noqa: E402  pylint: disable=wrong-import-position
import dbops_servers.state  # noqa: E402  pylint: disable=wrong-import-position
from dbops_servers.common import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    ADMIN_USER, DEFAULT_PORTS, HarnessError, INSTANCES_FILE, KINDS, LOCALHOST, MARIADBD,
    MARIADB_CLIENT, MARIADB_INSTALL_DB, PG15_BIN_DIR, PORT_RETRIES, PortInUse, RUN_AS_USER,
    SERVER_NAMES, START_TIMEOUT, STATE_FILE, STOP_TIMEOUT, _as_run_user, _chown_run_user,
    _clean_env, _free_ports, _is_root, _kill_pid, _locked, _log, _pid_alive, _pid_cmdline,
    _port_for, _print_lock, _read_password_file, _read_pid, _rmtree, _run_user_can, _tail,
    _user_lock, _wait_pid_gone, _write_json_private, _write_private, ensure_run_user, pid_alive,
    port_is_free)
from dbops_servers.pgserver import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    _pg16_lock, _pgserver_pkg_dir, pg15_bin_dir, pg16_bin_dir)
from dbops_servers.postgresql import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    PostgresServer)
from dbops_servers.mariadb import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    MariaDBServer)
from dbops_servers.state import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    _load_instances, _parse_only, _raw_info, _save_or_remove, _server_of, _start_one, _write_info,
    load_info, make_server, parse_instances, start, status, stop)

_PARTS = (dbops_servers.common, dbops_servers.pgserver, dbops_servers.postgresql,
          dbops_servers.mariadb, dbops_servers.state)


class _Servers(types.ModuleType):
    """This module; assigning one of its names also assigns it in every part that has it."""

    def __setattr__(self, name, value):
        for part in _PARTS:
            if name in vars(part):
                setattr(part, name, value)
        super().__setattr__(name, value)


if __name__ in sys.modules:  # (not when loaded from its path with importlib and not registered)
    sys.modules[__name__].__class__ = _Servers


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", default=os.environ.get("DBOPS_SERVERS_STATE"),
                        help="directory for data dirs and servers.json "
                             "(default: $DBOPS_SERVERS_STATE)")
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(SERVER_NAMES)
                        + " (or of the instances, for stop)")
    parser.add_argument("--instances", metavar="NAME=KIND@ADDRESS,...",
                        help="start these instances (KIND: " + ", ".join(KINDS) + "; ADDRESS in "
                             "127.0.0.0/8), e.g. pg15a=pg15@127.0.0.11,maria1=mariadb@127.0.0.21")
    parser.add_argument("--password-file",
                        help="0600 file with the password for the servers started now "
                             "(not copied into servers.json)")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT,
                        help="seconds to wait for each server to accept logins")
    args = parser.parse_args(argv)
    if not args.state_dir:
        parser.error("--state-dir is required (or set DBOPS_SERVERS_STATE)")
    try:
        if args.command == "start":
            t0 = time.monotonic()
            info = start(args.state_dir, args.only, args.timeout, instances=args.instances,
                         password_file=args.password_file)
            _log(f"{len(info)} server(s) ready in {time.monotonic() - t0:.1f}s; "
                 f"connection details in {os.path.join(os.path.abspath(args.state_dir), STATE_FILE)}")
        elif args.command == "stop":
            stop(args.state_dir, args.only)
        else:
            st = status(args.state_dir)
            print(json.dumps(st, indent=2, sort_keys=True))
            return 0 if st and all(s["running"] for s in st.values()) else 3
    except HarnessError as e:
        print(f"servers: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
