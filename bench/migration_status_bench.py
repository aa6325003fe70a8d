"""Benchmark: migration_status on a history of N migrations (directory and table), per engine.

For each engine (PostgreSQL 15, MariaDB 10.11, SQLite) and each size (default 1000, 5000, 10000):
a Prisma migrations directory of N migration.sql files and a _prisma_migrations table of N applied
rows (the heaviest tool: one SHA-256 per file, one row per migration). It measures

* module: wall time of the migration_status module itself (python plugins/modules/migration_status.py
  args.json, as Ansible runs it on the host: interpreter start, imports, connect, read the
  directory and the table, compare), median of --reps runs;
* select: wall time of reading the same table with a plain SELECT from the engine's client
  (psql -c / mysql -e / sqlite3), median of --reps runs;
* ratio: module / select; and once, at the largest size, the whole ansible-playbook run.

Goal: linear in N, module under 2 s at 10,000. Prints a table, writes
bench/results/migration_status_<UTC>.json and .md. Starts its own servers with
tests/harness/servers.py in a temp state dir (or uses --state-dir) and stops them.

    .venv/bin/python bench/migration_status_bench.py [--sizes 1000,5000,10000] [--reps 5]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position

MODULE = REPO / "plugins" / "modules" / "migration_status.py"
DDL = {
    "postgresql": 'CREATE TABLE "_prisma_migrations" ("id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) '
                  'NOT NULL, "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, '
                  '"rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), '
                  '"applied_steps_count" INTEGER NOT NULL DEFAULT 0)',
    "mysql": "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL, "
             "finished_at DATETIME(3), migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at DATETIME(3), "
             "started_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), applied_steps_count INTEGER UNSIGNED "
             "NOT NULL DEFAULT 0) DEFAULT CHARACTER SET utf8mb4",
    "sqlite": 'CREATE TABLE "_prisma_migrations" ("id" TEXT PRIMARY KEY NOT NULL, "checksum" TEXT NOT NULL, '
              '"finished_at" DATETIME, "migration_name" TEXT NOT NULL, "logs" TEXT, "rolled_back_at" DATETIME, '
              '"started_at" DATETIME NOT NULL DEFAULT current_timestamp, "applied_steps_count" INTEGER UNSIGNED '
              'NOT NULL DEFAULT 0)',
}
SELECT = "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count " \
         "FROM _prisma_migrations ORDER BY started_at, id"


def make_dir(root, n):
    d = root / ("prisma-%d" % n)
    if d.exists():
        return d
    names = []
    for i in range(n):
        name = "2025%010d_migration_%d" % (i, i)
        (d / name).mkdir(parents=True)
        sql = "-- AlterTable\nALTER TABLE `t%d` ADD COLUMN `c%d` VARCHAR(191) NULL;\n" % (i % 50, i)
        (d / name / "migration.sql").write_text(sql)
        names.append((name, hashlib.sha256(sql.encode()).hexdigest()))
    (d / "names.json").write_text(json.dumps(names))
    return d


def connect(engine, info, db):
    if engine == "postgresql":
        import psycopg  # pylint: disable=import-outside-toplevel
        return psycopg.connect(host=info["login_host"], port=info["login_port"], user=info["login_user"],
                               password=info["login_password"], dbname=db, autocommit=True)
    if engine == "mysql":
        import pymysql  # pylint: disable=import-outside-toplevel
        return pymysql.connect(host=info["login_host"], port=info["login_port"], user=info["login_user"],
                               password=info["login_password"], database=db, autocommit=True)
    return sqlite3.connect(db, isolation_level=None)


def fill(engine, info, db, d):
    names = json.loads((d / "names.json").read_text())
    conn = connect(engine, info, db)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS _prisma_migrations")
    cur.execute(DDL[engine])
    ph = "?" if engine == "sqlite" else "%s"
    now = "2025-01-01 00:00:00"
    rows = [(str(uuid.uuid4()), c, now, n, "", now, 1) for n, c in names]
    q = ("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, logs, started_at, "
         "applied_steps_count) VALUES (%s)" % ", ".join([ph] * 7))
    if engine == "sqlite":
        cur.execute("BEGIN")
        cur.executemany(q, rows)
        cur.execute("COMMIT")
    else:
        for i in range(0, len(rows), 1000):
            cur.executemany(q, rows[i:i + 1000])
    conn.close()


def module_args(engine, info, db, d):
    args = {"engine": engine, "database": db, "tool": "prisma", "migrations_path": str(d),
            "fail_on": ["failed", "pending", "unknown", "modified"]}
    if engine != "sqlite":
        args.update(login_host=info["login_host"], login_port=info["login_port"], login_user=info["login_user"],
                    login_password=info["login_password"])
    return args


def time_module(args_file, env):
    t = time.perf_counter()
    p = subprocess.run([sys.executable, str(MODULE), str(args_file)], env=env, capture_output=True, text=True,
                       check=False)
    elapsed = time.perf_counter() - t
    out = json.loads(p.stdout)
    if out.get("failed") or not out.get("clean"):
        raise RuntimeError("migration_status did not report a clean history: %s" % p.stdout[:2000])
    return elapsed, out


def select_cmd(engine, info, db):
    if engine == "postgresql":
        return (["psql", "-X", "-q", "-A", "-t", "-h", info["login_host"], "-p", str(info["login_port"]),
                 "-U", info["login_user"], "-d", db, "-c", SELECT], {"PGPASSWORD": info["login_password"]})
    if engine == "mysql":
        return (["mysql", "-h", info["login_host"], "-P", str(info["login_port"]), "-u", info["login_user"],
                 "-B", "-N", db, "-e", SELECT], {"MYSQL_PWD": info["login_password"]})
    return (["sqlite3", db, SELECT], {})


def time_select(engine, info, db):
    cmd, extra = select_cmd(engine, info, db)
    t = time.perf_counter()
    p = subprocess.run(cmd, env=dict(os.environ, **extra), capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - t
    return elapsed, len(p.stdout.splitlines())


def time_playbook(args, workdir):
    pb = workdir / "pb.yml"
    fd = os.open(pb, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([{"hosts": "localhost", "gather_facts": False,
                    "tasks": [{"dbops.maintenance.migration_status": args}]}], f)
    inv = workdir / "inv"
    inv.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"), ANSIBLE_NOCOLOR="1")
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(pb)], env=env,
                   capture_output=True, check=True)
    return time.perf_counter() - t


def main():  # pylint: disable=too-many-locals,too-many-statements
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--engines", default="postgresql,mysql,sqlite")
    ap.add_argument("--state-dir", help="use servers already started there (tests/harness/servers.py)")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    engines = a.engines.split(",")
    subprocess.run(["bash", str(REPO / "scripts" / "collection-tree.sh")], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="dbops-migbench-"))
    os.chmod(work, 0o711)
    own = a.state_dir is None
    state = a.state_dir or str(work / "servers")
    results = []
    try:
        want = [s for s, e in (("pg15", "postgresql"), ("mariadb", "mysql")) if e in engines]
        if want and own:
            subprocess.run([sys.executable, str(REPO / "tests" / "harness" / "servers.py"), "start", "--state-dir",
                            state, "--only", ",".join(want)], check=True)
        info = harness.load_info(state) if want else {}
        env = dict(os.environ, PYTHONPATH=str(REPO / "build" / "collections"))
        for engine in engines:
            srv = {"postgresql": info.get("pg15"), "mysql": info.get("mariadb")}.get(engine)
            if engine == "sqlite":
                db = str(work / "bench.sqlite3")
                sqlite3.connect(db).close()
            else:
                db = "dbops_migbench"
                c = connect(engine, srv, srv["database"])
                c.cursor().execute("DROP DATABASE IF EXISTS dbops_migbench")
                c.cursor().execute("CREATE DATABASE dbops_migbench")
                c.close()
            for n in sizes:
                d = make_dir(work, n)
                fill(engine, srv, db, d)
                args_file = work / "args.json"
                fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump({"ANSIBLE_MODULE_ARGS": module_args(engine, srv, db, d)}, f)
                time_module(args_file, env)  # warm-up (page cache, server buffers)
                mod = [time_module(args_file, env)[0] for _rep in range(a.reps)]
                sel = [time_select(engine, srv, db)[0] for _rep in range(a.reps)]
                row = dict(engine=engine, size=n, module_s=statistics.median(mod), module_all=mod,
                           select_s=statistics.median(sel), select_all=sel)
                row["ratio"] = row["module_s"] / row["select_s"]
                if n == max(sizes):
                    row["playbook_s"] = time_playbook(module_args(engine, srv, db, d), work)
                results.append(row)
                print("%-10s %6d  module %.3f s  select %.3f s  ratio %.1f%s" % (
                    engine, n, row["module_s"], row["select_s"], row["ratio"],
                    ("  (whole ansible-playbook %.2f s)" % row["playbook_s"]) if "playbook_s" in row else ""),
                    flush=True)
    finally:
        if own and os.path.exists(state):
            subprocess.run([sys.executable, str(REPO / "tests" / "harness" / "servers.py"), "stop", "--state-dir",
                            state], check=False)
        shutil.rmtree(work, ignore_errors=True)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = ["# migration_status benchmark (%s)" % stamp, "",
             "Prisma history: N migration directories + N applied rows; median of %d runs." % a.reps, "",
             "| engine | migrations | module (s) | plain SELECT (s) | ratio | per 1,000 (ms) | whole ansible-playbook (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for r in results:
        lines.append("| %s | %d | %.3f | %.3f | %.1f | %.0f | %s |" % (
            r["engine"], r["size"], r["module_s"], r["select_s"], r["ratio"], 1e6 * r["module_s"] / r["size"],
            "%.2f" % r["playbook_s"] if "playbook_s" in r else ""))
    for engine in engines:
        rs = sorted((r for r in results if r["engine"] == engine), key=lambda r: r["size"])
        if len(rs) >= 2:
            small, big = rs[0], rs[-1]
            growth = (big["module_s"] - small["module_s"]) / (big["size"] - small["size"]) * 1e6
            verdicts.append("%s: %.1f ms per 1,000 more migrations; %s 2 s at %d" % (
                engine, growth, "under" if big["module_s"] < 2 else "OVER", big["size"]))
    lines += [""] + ["- " + v for v in verdicts]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(dict(results=results, verdicts=verdicts), indent=2)
    (out / ("migration_status_%s.json" % stamp)).write_text(doc)
    (out / ("migration_status_%s.md" % stamp)).write_text(text)
    return 0 if all(r["module_s"] < 2 for r in results if r["size"] <= 10000) else 1


if __name__ == "__main__":
    sys.exit(main())
