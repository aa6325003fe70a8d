"""Benchmark: migration_status on a history of N migrations (directory and table), per engine.

For each engine (PostgreSQL 15, MariaDB 10.11, SQLite) and each size (default 1000, 5000, 10000):
a Prisma migrations directory of N migration.sql files and a _prisma_migrations table of N applied
rows (the heaviest tool: one SHA-256 per file, one row per migration). It measures

* module: wall time of the migration_status module itself (python plugins/modules/migration_status.py
  args.json, as Ansible runs it on the host: interpreter start, imports, connect, read the
  directory and the table, compare), median of --reps runs;
* select: like with like: a Python subprocess of the same interpreter that imports the same driver,
  connects the same way and reads the same table with a plain SELECT (what any reader of the table pays:
  interpreter start, driver import, connect), median of --reps runs;
* ratio: module / select (the cost of what the module adds: the directory, the checksums, the
  comparison); and once, at the largest size, the whole ansible-playbook run.
The module and select runs alternate (A B A B ...). The commit and uncommitted files, ansible and server
versions and the load before and after are recorded (bench/benchlib.py).

Goal: module under 2 s at 10,000 (evaluated only when 10000 is one of --sizes: otherwise exit 2, "not
evaluated"); linear growth is reported. Exit 0 only when the goal was evaluated and met. Prints a table, writes
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
sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

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


SELECT_SCRIPT = r"""
import json, sys
spec = json.loads(open(sys.argv[1]).read())
e = spec["engine"]
if e == "postgresql":
    import psycopg
    conn = psycopg.connect(host=spec["login_host"], port=spec["login_port"], user=spec["login_user"],
                           password=spec["login_password"], dbname=spec["database"], autocommit=True)
elif e == "mysql":
    import pymysql
    conn = pymysql.connect(host=spec["login_host"], port=spec["login_port"], user=spec["login_user"],
                           password=spec["login_password"], database=spec["database"], autocommit=True)
else:
    import sqlite3
    conn = sqlite3.connect(spec["database"])
cur = conn.cursor()
cur.execute(sys.argv[2])
print(len(cur.fetchall()))
"""


def time_select(spec_file):
    """The same interpreter, the same driver, the same connection, the same table: a plain SELECT."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", SELECT_SCRIPT, str(spec_file), SELECT], capture_output=True, text=True,
                       check=True)
    elapsed = time.perf_counter() - t
    return elapsed, int(p.stdout.strip())


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
    env_doc = None
    try:
        want = [s for s, e in (("pg15", "postgresql"), ("mariadb", "mysql")) if e in engines]
        if want and own:
            subprocess.run([sys.executable, str(REPO / "tests" / "harness" / "servers.py"), "start", "--state-dir",
                            state, "--only", ",".join(want)], check=True)
        info = harness.load_info(state) if want else {}
        env_doc = benchlib.environment(info)
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
                spec_file = work / "select.json"
                fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(module_args(engine, srv, db, d), f)
                time_module(args_file, env)  # warm-up (page cache, server buffers)
                time_select(spec_file)
                mod, sel = benchlib.alternate(a.reps, lambda: time_module(args_file, env)[0],
                                              lambda: time_select(spec_file)[0])
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
    env_doc = benchlib.finish(env_doc or benchlib.environment())
    lines = ["# migration_status benchmark (%s)" % stamp, "", benchlib.describe(env_doc), "",
             "Prisma history: N migration directories + N applied rows; median of %d alternated runs (module, "
             "select, module, select, ...). Plain SELECT = a Python subprocess with the same driver and connection "
             "reading the same table." % a.reps, "",
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
    goals = []
    for engine in engines:
        at = [r for r in results if r["engine"] == engine and r["size"] == 10000]
        goals.append(("%s: module under 2 s at 10,000 migrations" % engine,
                      (at[0]["module_s"] < 2) if at else None))
    lines += [""] + ["- " + v for v in verdicts] + benchlib.goals_text(goals)
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(dict(results=results, verdicts=verdicts, environment=env_doc,
                          goals=[dict(goal=n, met=m) for n, m in goals]), indent=2)
    (out / ("migration_status_%s.json" % stamp)).write_text(doc)
    (out / ("migration_status_%s.md" % stamp)).write_text(text)
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
