"""Dump every database of the scenario's fleet, one file per host: ``python dump.py OUT_DIR``.

prepare.yml runs it before the check run, test_checkmode.py after it (same code, same options), and the
test compares the files byte for byte. Each file holds:

* the server's list of databases (PostgreSQL ``pg_database``, MariaDB ``SHOW DATABASES``) or the files
  beside the SQLite file, so a scratch copy left behind shows up;
* the dump of the application database: PostgreSQL ``pg_dump --format=plain`` (schema and data) with the
  server's own pg_dump, MariaDB ``mariadb-dump --skip-dump-date`` (schema and data, routines, triggers,
  events), SQLite ``sqlite3 FILE .dump`` plus the sha256 of the file's bytes.

The only lines removed are volatile ones that differ between two dumps of the same database: pg_dump's
``\\restrict <random key>`` / ``\\unrestrict <random key>`` (PostgreSQL 15.14+/16.10+ print a new random key
each time). mariadb-dump's date line is not printed at all (``--skip-dump-date``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))

from dbops_molecule import Fleet  # noqa: E402  pylint: disable=wrong-import-position

VOLATILE_PREFIXES = (b"\\restrict ", b"\\unrestrict ")


def servers(fleet):
    with open(os.path.join(fleet.data["servers_state"], "servers.json"), encoding="utf-8") as f:
        return json.load(f)


def run(argv, env=None):
    res = subprocess.run(argv, capture_output=True, check=False, env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {res.returncode}: {res.stderr.decode(errors='replace')}")
    return res.stdout


def strip_volatile(data):
    return b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(VOLATILE_PREFIXES))


def dump_host(fleet, name, server):
    h = fleet.host(name)
    if h["engine"] == "postgresql":
        databases = "\n".join(r[0] for r in fleet.query(name, "SELECT datname FROM pg_database ORDER BY datname"))
        data = run([os.path.join(server["bin_dir"], "pg_dump"), "--no-password", "--format=plain",
                    f"--host={h['login_host']}", f"--port={h['login_port']}", f"--username={h['login_user']}",
                    f"--dbname={h['database']}"], env={"PGPASSWORD": fleet.password(name)})
        data = strip_volatile(data)
    elif h["engine"] == "mysql":
        databases = "\n".join(r[0] for r in fleet.query(name, "SHOW DATABASES"))
        data = run(["mariadb-dump", "--skip-dump-date", "--single-transaction", "--routines", "--triggers",
                    "--events", "--hex-blob", f"--host={h['login_host']}", f"--port={h['login_port']}",
                    f"--user={h['login_user']}", "--databases", h["database"]],
                   env={"MYSQL_PWD": fleet.password(name)})
    else:
        path = h["database"]
        databases = "\n".join(sorted(os.listdir(os.path.dirname(path))))
        with open(path, "rb") as f:
            databases += f"\nsha256 {os.path.basename(path)} {hashlib.sha256(f.read()).hexdigest()}"
        data = run(["sqlite3", "-readonly", path, ".dump"])
    return f"-- databases of {name}\n{databases}\n-- dump\n".encode() + data


def dump_all(out_dir, fleet=None):
    """Writes OUT_DIR/<host>.dump for every host; returns {host: path}."""
    fleet = fleet or Fleet.load()
    info = servers(fleet)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in fleet.names():
        paths[name] = out / f"{name}.dump"
        paths[name].write_bytes(dump_host(fleet, name, info.get(name, {})))
    return paths


if __name__ == "__main__":
    for host, p in dump_all(sys.argv[1]).items():
        print(f"{host}: {p} ({p.stat().st_size} bytes)")
