"""Build and tear down the database fleet of the molecule scenarios.

Called by molecule/resources/create.yml and destroy.yml (with the Python that runs
ansible-playbook, i.e. the project's venv)::

    python dbops_fleet.py create  --ephemeral-dir DIR --scenario-dir DIR --python PY
    python dbops_fleet.py destroy --ephemeral-dir DIR

create:

* reads the fleet (``<scenario-dir>/vars/fleet.yml``, else ``molecule/resources/vars/fleet.yml``);
* starts every PostgreSQL / MariaDB instance in parallel on its own loopback address with
  tests/harness/servers.py (data dirs in a /tmp directory, the password from
  ``<ephemeral>/dbops/password``, which create.yml generated), creates the application
  database on each and seeds it; creates the SQLite files;
* starts a private sshd (own host key, own client key pair, key-only root login) on the
  address of the ``connection: ssh`` hosts, on a free port;
* writes ``<ephemeral>/inventory/dbops_fleet.yml`` (molecule passes that directory to
  ansible-playbook and testinfra) and ``<ephemeral>/dbops/connections.json`` (for the
  testinfra tests; see molecule/resources/dbops_molecule.py).

The password is only in ``<ephemeral>/dbops/password`` (0600); servers.json, the inventory
and connections.json name that file.  destroy undoes everything create did (also after a
create that failed half-way) and is a no-op when there is nothing to destroy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HARNESS = REPO / "tests" / "harness" / "servers.py"
DEFAULT_FLEET = HERE / "vars" / "fleet.yml"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
KINDS = ("pg15", "pg16", "mariadb", "sqlite")
ENGINES = {"pg15": "postgresql", "pg16": "postgresql", "mariadb": "mysql", "sqlite": "sqlite"}
INVENTORY_NAME = "dbops_fleet.yml"

PG_SEED = [
    '''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE', 'OAUTH_TOKEN')''',
    '''CREATE TABLE "ExternalCredential" (
         id serial PRIMARY KEY,
         platform text NOT NULL,
         type "CredentialType" NOT NULL,
         "createdAt" timestamptz NOT NULL DEFAULT now())''',
    '''INSERT INTO "ExternalCredential" (platform, type) VALUES
         ('GITHUB', 'API_KEY'), ('GITLAB', 'OAUTH_TOKEN'), ('JIRA', 'COOKIE')''',
]
MYSQL_SEED = [
    '''CREATE TABLE shipment_records (
         id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
         trackingNumber varchar(64) NOT NULL,
         status ENUM('PENDING', 'SHIPPED', 'DELIVERED') NOT NULL DEFAULT 'PENDING',
         createdAt datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4''',
    '''INSERT INTO shipment_records (trackingNumber, status) VALUES
         ('TRK-0001', 'PENDING'), ('TRK-0002', 'SHIPPED'), ('TRK-0003', 'DELIVERED')''',
]
SQLITE_SEED = [
    '''CREATE TABLE customers (
         id INTEGER PRIMARY KEY,
         email TEXT NOT NULL UNIQUE,
         created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)''',
    '''INSERT INTO customers (email) VALUES ('a@example.com'), ('b@example.com')''',
]


class FleetError(RuntimeError):
    """The fleet could not be built."""


def log(msg):
    print(f"dbops_fleet: {msg}", file=sys.stderr, flush=True)


def load_harness():
    spec = importlib.util.spec_from_file_location("dbops_harness_servers", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_private(path, text):
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return default


class Paths:  # pylint: disable=too-few-public-methods
    """Where everything of one scenario run lives."""

    def __init__(self, ephemeral_dir):
        self.ephemeral = Path(ephemeral_dir).resolve()
        self.private = self.ephemeral / "dbops"              # 0700: password, keys, state
        self.password = self.private / "password"
        self.state = self.private / "state.json"
        self.connections = self.private / "connections.json"
        self.ssh = self.private / "ssh"
        self.inventory = self.ephemeral / "inventory" / INVENTORY_NAME


# --------------------------------------------------------------------------
# fleet file
# --------------------------------------------------------------------------

def read_fleet(scenario_dir):
    path = Path(scenario_dir) / "vars" / "fleet.yml" if scenario_dir else None
    if not path or not path.is_file():
        path = DEFAULT_FLEET
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    hosts = data.get("dbops_fleet") if isinstance(data, dict) else None
    if not isinstance(hosts, list) or not hosts:
        raise FleetError(f"{path}: expected a non-empty list 'dbops_fleet'")
    seen_names, seen_addr = set(), {}
    fleet = []
    for entry in hosts:
        name, kind, address = entry.get("name"), entry.get("kind"), entry.get("address")
        if not name or kind not in KINDS or not str(address or "").startswith("127."):
            raise FleetError(f"{path}: bad entry {entry!r}: name, kind ({', '.join(KINDS)}) "
                             "and address (127.x.y.z) are required")
        if name in seen_names:
            raise FleetError(f"{path}: host {name} listed twice")
        if address in seen_addr:
            raise FleetError(f"{path}: {name} and {seen_addr[address]} share {address}")
        seen_names.add(name)
        seen_addr[address] = name
        connection = entry.get("connection", "local")
        if connection not in ("local", "ssh"):
            raise FleetError(f"{path}: {name}: connection must be local or ssh")
        fleet.append({
            "name": name, "kind": kind, "address": address, "connection": connection,
            "engine": ENGINES[kind],
            "database": entry.get("database") or ("appdb.sqlite3" if kind == "sqlite" else "appdb"),
            "seed": bool(entry.get("seed", True)),
            "groups": list(entry.get("groups") or []),
            "vars": dict(entry.get("vars") or {}),
        })
    log(f"fleet from {path}: {', '.join(h['name'] for h in fleet)}")
    return fleet


# --------------------------------------------------------------------------
# databases
# --------------------------------------------------------------------------

def create_pg_database(info, password, database, seed):
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    common = {"host": info["login_host"], "port": info["login_port"], "user": info["login_user"],
              "password": password, "connect_timeout": 10, "sslmode": "disable"}
    with psycopg.connect(dbname="postgres", autocommit=True, **common) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    if seed:
        with psycopg.connect(dbname=database, **common) as conn:
            for stmt in PG_SEED:
                conn.execute(stmt)


def create_mysql_database(info, password, database, seed):
    import pymysql  # pylint: disable=import-outside-toplevel
    conn = pymysql.connect(host=info["login_host"], port=info["login_port"],
                           user=info["login_user"], password=password, connect_timeout=10,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            quoted = "`" + database.replace("`", "``") + "`"
            cur.execute(f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4")
            if seed:
                cur.execute(f"USE {quoted}")
                for stmt in MYSQL_SEED:
                    cur.execute(stmt)
    finally:
        conn.close()


def create_sqlite_database(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        if seed:
            conn.executescript(";\n".join(SQLITE_SEED) + ";")
        else:
            conn.execute("PRAGMA user_version = 0")  # creates the (empty) file
        conn.commit()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# sshd
# --------------------------------------------------------------------------

def free_port(address):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def start_sshd(paths, addresses):
    """A private sshd on ``addresses`` (one free port), key-only root login; returns its details."""
    if not os.path.exists(SSHD):
        raise FleetError(f"{SSHD} missing: install openssh-server (scripts/bootstrap.sh)")
    ssh = paths.ssh
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    host_key, client_key = ssh / "ssh_host_ed25519_key", ssh / "id_ed25519"
    for key, comment in ((host_key, "dbops-molecule-host"), (client_key, "dbops-molecule-client")):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
                       check=True, capture_output=True)
    authorized = ssh / "authorized_keys"
    write_private(authorized, (ssh / "id_ed25519.pub").read_text(encoding="ascii"))
    # Privilege separation directory (normally made by the init system).
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    port = free_port(addresses[0])
    config = ssh / "sshd_config"
    pid_file = ssh / "sshd.pid"
    log_file = ssh / "sshd.log"
    lines = [f"ListenAddress {a}:{port}" for a in addresses] + [
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the keys sit in a 0700 dir of ours; its parents may be /tmp
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "MaxStartups 50:30:100",
        "MaxSessions 50",
        "LogLevel VERBOSE",
        f"Subsystem sftp {SFTP_SERVER}",
    ]
    write_private(config, "\n".join(lines) + "\n")
    res = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise FleetError(f"sshd -t: {res.stderr.strip()}")
    # Without -D sshd detaches and writes PidFile once it listens.
    res = subprocess.run([SSHD, "-f", str(config), "-E", str(log_file)], capture_output=True,
                         text=True, check=False, start_new_session=True)
    if res.returncode != 0:
        raise FleetError(f"sshd failed to start: {res.stderr.strip()}\n{tail(log_file)}")
    ssh_cmd = ["ssh", "-i", str(client_key), "-p", str(port), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]
    deadline = time.monotonic() + 20
    for address in addresses:
        while True:
            res = subprocess.run(ssh_cmd + [f"root@{address}", "true"], capture_output=True,
                                 text=True, check=False)
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise FleetError(f"cannot log in over ssh to root@{address}:{port}: "
                                 f"{res.stderr.strip()}\n{tail(log_file)}")
            time.sleep(0.2)
    log(f"sshd on {', '.join(addresses)} port {port} (pid file {pid_file})")
    return {"port": port, "pid_file": str(pid_file), "config": str(config),
            "private_key": str(client_key), "log_file": str(log_file)}


def stop_sshd(sshd):
    pid_file, config = sshd.get("pid_file"), sshd.get("config")
    try:
        pid = int(Path(pid_file).read_text(encoding="ascii").strip())
    except (OSError, ValueError, TypeError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return
    if "sshd" not in cmdline or config not in cmdline:
        return  # not our sshd (pid reused)
    # Its per-connection children (e.g. serving an ssh ControlMaster of Ansible's) outlive
    # the listener: end them too, so the clients' control masters go away.
    children = [c for c in _child_pids(pid) if "sshd" in _cmdline(c)]
    os.kill(pid, signal.SIGTERM)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
    for _attempt in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    log(f"sshd {pid} stopped")


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _child_pids(parent):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            out.append(int(entry))
    return out


def tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# create / destroy
# --------------------------------------------------------------------------

def destroy(paths):
    state = read_json(paths.state)
    did = False
    if state:
        if state.get("sshd"):
            stop_sshd(state["sshd"])
        work = state.get("work_dir")
        servers_state = state.get("servers_state")
        if servers_state and os.path.isdir(servers_state):
            load_harness().stop(servers_state)
        if work and os.path.isdir(work) and os.path.basename(work).startswith("dbops-molecule-"):
            shutil.rmtree(work, ignore_errors=True)
        did = True
    for path in (paths.inventory,):
        if path.exists():
            path.unlink()
            did = True
    if paths.private.exists():
        shutil.rmtree(paths.private, ignore_errors=True)
        did = True
    print("destroyed" if did else "nothing to destroy")


def create(paths, scenario_dir, python):
    t0 = time.monotonic()
    if paths.state.exists() or paths.inventory.exists():
        log("leftovers of an earlier create: destroying them first")
        password = paths.password.read_text(encoding="utf-8") if paths.password.exists() else None
        destroy(paths)
        if password:
            paths.private.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(paths.password, password)
    if not paths.password.exists():
        raise FleetError(f"{paths.password} missing: create.yml generates it")
    password = paths.password.read_text(encoding="utf-8").strip()
    fleet = read_fleet(scenario_dir)

    # Data dirs under /tmp: the PostgreSQL servers run as an unprivileged user that must
    # traverse every parent directory (the ephemeral dir usually sits under /root).
    work = Path(tempfile.mkdtemp(prefix="dbops-molecule-", dir="/tmp"))
    work.chmod(0o711)
    servers = [h for h in fleet if h["kind"] != "sqlite"]
    ssh_addresses = [h["address"] for h in fleet if h["connection"] == "ssh"]
    state = {"work_dir": str(work), "servers_state": str(work / "servers"),
             "sshd": {"pid_file": str(paths.ssh / "sshd.pid"), "config": str(paths.ssh / "sshd_config")}
             if ssh_addresses else None}
    paths.private.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(paths.state, json.dumps(state, indent=2) + "\n")  # before anything starts
    harness = load_harness()
    infos = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        sshd_future = pool.submit(start_sshd, paths, ssh_addresses) if ssh_addresses else None
        if servers:
            spec = ",".join(f"{h['name']}={h['kind']}@{h['address']}" for h in servers)
            try:
                infos = harness.start(state["servers_state"], instances=spec,
                                      password_file=str(paths.password))
            except harness.HarnessError as e:
                raise FleetError(str(e)) from None
        if sshd_future:
            state["sshd"] = sshd_future.result()
            write_private(paths.state, json.dumps(state, indent=2) + "\n")

    def make_db(host):
        if host["kind"] == "sqlite":
            path = work / "sqlite" / host["name"] / host["database"]
            create_sqlite_database(path, host["seed"])
            host["database"] = str(path)
        elif host["engine"] == "postgresql":
            create_pg_database(infos[host["name"]], password, host["database"], host["seed"])
        else:
            create_mysql_database(infos[host["name"]], password, host["database"], host["seed"])

    with ThreadPoolExecutor(max_workers=max(1, len(fleet))) as pool:
        list(pool.map(make_db, fleet))

    write_outputs(paths, fleet, infos, state, work, python)
    log(f"{len(fleet)} hosts ready in {time.monotonic() - t0:.1f}s; inventory {paths.inventory}")


def write_outputs(paths, fleet, infos, state, work, python):  # pylint: disable=too-many-arguments,too-many-positional-arguments
    password_lookup = "{{ lookup('ansible.builtin.file', '%s') }}" % paths.password  # pylint: disable=consider-using-f-string
    groups = {"dbops_databases": {"hosts": {}}, "dbops_postgresql": {"hosts": {}},
              "dbops_mysql": {"hosts": {}}, "dbops_sqlite": {"hosts": {}}, "dbops_ssh": {"hosts": {}},
              "dbops_local": {"hosts": {}}}
    connections = {}
    for host in fleet:
        name = host["name"]
        info = infos.get(name, {})
        host_dir = work / "hosts" / name
        host_dir.mkdir(mode=0o700, parents=True)
        hv = {
            "ansible_host": host["address"],
            "ansible_connection": host["connection"],
            "ansible_python_interpreter": python,
            "dbops_engine": host["engine"],
            "dbops_server_kind": host["kind"],
            "dbops_server_version": info.get("version", sqlite3.sqlite_version),
            "dbops_login_host": info.get("login_host"),
            "dbops_login_port": info.get("login_port"),
            "dbops_login_user": info.get("login_user"),
            "dbops_login_password": password_lookup if info else None,
            "dbops_database": host["database"],
            "dbops_molecule_dir": str(host_dir),
        }
        if host["connection"] == "ssh":
            hv.update({
                "ansible_port": state["sshd"]["port"],
                "ansible_user": "root",
                "ansible_ssh_private_key_file": state["sshd"]["private_key"],
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            })
        hv.update(host["vars"])
        groups["dbops_databases"]["hosts"][name] = hv
        groups[f"dbops_{host['engine']}"]["hosts"][name] = None
        groups["dbops_ssh" if host["connection"] == "ssh" else "dbops_local"]["hosts"][name] = None
        for group in host["groups"]:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = None
        connections[name] = {
            "engine": host["engine"], "kind": host["kind"], "address": host["address"],
            "connection": host["connection"], "database": host["database"],
            "login_host": info.get("login_host"), "login_port": info.get("login_port"),
            "login_user": info.get("login_user"),
            "password_file": str(paths.password) if info else None,
            "version": hv["dbops_server_version"], "molecule_dir": str(host_dir),
            "groups": host["groups"], "vars": host["vars"],
        }
    inventory = {"all": {"children": {g: v for g, v in groups.items() if v["hosts"]}}}
    header = ("# Written by molecule/resources/dbops_fleet.py (create.yml); removed by destroy.yml.\n"
              "# The password is read from the ephemeral dir when used; it is not in this file.\n")
    paths.inventory.parent.mkdir(parents=True, exist_ok=True)
    write_private(paths.inventory, header + yaml.safe_dump(inventory, sort_keys=False, width=1000))
    write_private(paths.connections, json.dumps(
        {"hosts": connections, "ssh": state["sshd"], "work_dir": str(work),
         "servers_state": state["servers_state"]}, indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("command", choices=("create", "destroy"))
    parser.add_argument("--ephemeral-dir", required=True)
    parser.add_argument("--scenario-dir")
    parser.add_argument("--python", default=sys.executable,
                        help="ansible_python_interpreter of every host (default: this Python)")
    args = parser.parse_args(argv)
    if not args.ephemeral_dir or not os.path.isabs(args.ephemeral_dir) \
            or not os.path.isdir(args.ephemeral_dir) or os.path.realpath(args.ephemeral_dir) == "/":
        parser.error(f"--ephemeral-dir {args.ephemeral_dir!r}: need molecule's existing ephemeral "
                     "directory (run through molecule: MOLECULE_EPHEMERAL_DIRECTORY)")
    paths = Paths(args.ephemeral_dir)
    try:
        if args.command == "create":
            create(paths, args.scenario_dir, args.python)
        else:
            destroy(paths)
    except FleetError as e:
        print(f"dbops_fleet: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
