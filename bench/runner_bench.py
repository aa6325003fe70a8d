"""Benchmark: the idempotent re-run of playbooks/maintenance.yml through ansible-runner (AWX's execution engine)
vs plain ansible-playbook, and with mitogen's strategy (mitogen_linear) as an option.

A fleet of --databases databases (default 12) spread over the harness's running servers (PostgreSQL 15,
PostgreSQL 16, MariaDB: tests/harness/servers.py start --state-dir DIR), one inventory host per database
(connection local, the venv's python), each seeded with the enum value the fix declares already present (every run is the idempotent re-run:
changed=0 on every host), and one unmeasured warm-up run first.

Three ways, the same inventory, extra vars, forks and collections, alternated A B C per rep (--reps, default 3):

    A  ansible-playbook -i inventory.yml -e @extra.yml --forks F playbooks/maintenance.yml
    B  ansible-runner run <private_data_dir> -p playbooks/maintenance.yml   (project/, inventory/, env/extravars,
       env/cmdline "--forks F", artifacts/<ident>/job_events: as AWX runs a job)
    C  A with ANSIBLE_STRATEGY=mitogen_linear (PyPI mitogen's ansible_mitogen strategy plugins)

Each run must end with rc 0 and changed=0 on every host (A, C: the PLAY RECAP; B: the stats event of the
artifacts); C must also give the same per-host report outcomes as A (the report's report.json). Measured: wall
time, CPU of the process tree (os.wait4 rusage). Goals: B's best of the reps within 10 % of A's best; C works
(same result) - its ratio to A is reported, not a goal. Exit 0 when every goal was evaluated and met, 1 when one
was not met, 2 when one could not be evaluated.

    .venv/bin/python bench/runner_bench.py --state-dir /work/srv/state-awx [--databases 12] [--forks 10] [--reps 3]

Results: bench/results/runner_bench_<UTC>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position
from conftest import Server  # noqa: E402  pylint: disable=wrong-import-position
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

VENV_BIN = Path(sys.executable).parent
TIMEOUT = 1800
PG_SEED = ['''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE', 'PERSONAL_ACCESS_TOKEN')''',
           'CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType")',
           '''INSERT INTO "ExternalCredential" (type) SELECT 'COOKIE' FROM generate_series(1, 100)''']
MY_SEED = ["CREATE TABLE shipment_records (id int PRIMARY KEY AUTO_INCREMENT, "
           "status ENUM('NEW','SHIPPED','RETURNED') NOT NULL)",
           "INSERT INTO shipment_records (status) VALUES ('NEW'), ('SHIPPED')"]
PG_FIX = [{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]}]
MY_FIX = [{"table": "shipment_records", "column": "status", "values": ["RETURNED"]}]
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def log(msg):
    print("[runner_bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def write_private(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def make_fleet(servers, n):
    """n databases round-robin over the servers; returns [(host, server, database)]."""
    names = sorted(servers)
    fleet = []
    for i in range(n):
        server = servers[names[i % len(names)]]
        db = server.create_database("dbops_rb_%02d_%s" % (i + 1, secrets.token_hex(3)))
        for sql in PG_SEED if server.engine == "postgresql" else MY_SEED:
            server.execute(db, sql)
        fleet.append(("db%02d" % (i + 1), server, db))
    return fleet


def inventory(fleet):
    hosts = {}
    for host, server, db in fleet:
        p = server.params(db)
        hosts[host] = {"dbops_engine": p["engine"], "dbops_database": db, "dbops_login_host": p["login_host"],
                       "dbops_login_port": p["login_port"], "dbops_login_user": p["login_user"],
                       "dbops_login_password": p["login_password"],
                       "dbops_enums": PG_FIX if server.engine == "postgresql" else MY_FIX}
    return {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                    "children": {"dbops_databases": {"hosts": hosts}}}}


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1", PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "/usr/bin:/bin")))
    env.update(extra or {})
    return env


def timed(cmd, env, cwd, out_file):
    """Run cmd; wall time and the CPU of its process tree (os.wait4)."""
    t = time.perf_counter()
    with open(out_file, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out,  # pylint: disable=consider-using-with
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t, 3),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3)}


def recap(text):
    out, on = {}, False
    for line in text.splitlines():
        if line.startswith("PLAY RECAP"):
            on = True
            continue
        m = RECAP_RE.match(line.strip()) if on else None
        if m:
            out[m[1]] = {"changed": int(m[3]), "failed": int(m[5]) + int(m[4])}
    return out


def outcomes(report_dir):
    reports = sorted(report_dir.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return {}
    return {h["host"]: h["outcome"] for h in json.loads(reports[-1].read_text())["hosts"]}


class Bench:
    def __init__(self, work, inv, forks):
        self.work, self.forks, self.n = work, forks, 0
        write_private(work / "inventory.yml", yaml.safe_dump(inv))
        self.extra = {"dbops_hosts": "dbops_databases", "dbops_serial": "100%", "dbops_preflight_min_free_mb": 1,
                      "dbops_backup_dir": str(work / "backups")}
        write_private(work / "extra.yml", yaml.safe_dump(self.extra))
        self.hosts = sorted(inv["all"]["children"]["dbops_databases"]["hosts"])

    def _check(self, name, res, per_host, report_dir):
        res["changed_hosts"] = sorted(h for h, r in per_host.items() if r["changed"])
        res["failed_hosts"] = sorted(h for h, r in per_host.items() if r["failed"])
        res["outcomes"] = outcomes(report_dir)
        res["ok"] = (res["rc"] == 0 and sorted(per_host) == self.hosts and not res["changed_hosts"]
                     and not res["failed_hosts"])
        log("%s: %.2f s wall, %.2f s CPU, rc %d, changed on %s%s" % (
            name, res["wall_s"], res["cpu_s"], res["rc"], res["changed_hosts"] or "no host",
            "" if res["ok"] else " - NOT an idempotent re-run: see " + str(res.get("output"))))
        return res

    def playbook(self, name, strategy=None):
        self.n += 1
        rdir = self.work / ("reports-%d" % self.n)
        extra_env = {}
        if strategy:
            import ansible_mitogen  # pylint: disable=import-outside-toplevel
            extra_env = {"ANSIBLE_STRATEGY": strategy,
                         "ANSIBLE_STRATEGY_PLUGINS": str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy")}
        out = self.work / ("out-%d-%s.txt" % (self.n, name))
        res = timed([str(VENV_BIN / "ansible-playbook"), "-i", str(self.work / "inventory.yml"),
                     "-e", "@" + str(self.work / "extra.yml"), "-e", "dbops_report_dir=" + str(rdir),
                     "--forks", str(self.forks), str(REPO / "playbooks" / "maintenance.yml")],
                    _env(extra_env), str(REPO), out)
        res["output"] = str(out)
        return self._check(name, res, recap(out.read_text(errors="replace")), rdir)

    def runner(self, name="ansible-runner"):
        self.n += 1
        pdd = self.work / ("pdd-%d" % self.n)
        shutil.copytree(REPO / "playbooks", pdd / "project" / "playbooks")
        (pdd / "inventory").mkdir(mode=0o700)
        shutil.copy(self.work / "inventory.yml", pdd / "inventory" / "hosts.yml")
        rdir = pdd / "reports"
        write_private(pdd / "env" / "extravars", yaml.safe_dump(dict(self.extra, dbops_report_dir=str(rdir))))
        write_private(pdd / "env" / "envvars", yaml.safe_dump(
            {k: v for k, v in _env().items() if k.startswith("ANSIBLE_") or k == "PATH"}))
        write_private(pdd / "env" / "cmdline", "--forks %d" % self.forks)
        ident = str(self.n)
        out = self.work / ("out-%d-%s.txt" % (self.n, name))
        res = timed([str(VENV_BIN / "ansible-runner"), "run", str(pdd), "-p", "playbooks/maintenance.yml",
                     "--ident", ident], _env(), str(REPO), out)
        res["output"] = str(out)
        per_host = {}
        for ev in (pdd / "artifacts" / ident / "job_events").glob("*.json"):
            e = json.loads(ev.read_text())
            if e.get("event") == "playbook_on_stats":
                d = e["event_data"]
                for h in set(d.get("ok", {})) | set(d.get("failures", {})) | set(d.get("dark", {})):
                    per_host[h] = {"changed": d.get("changed", {}).get(h, 0),
                                   "failed": d.get("failures", {}).get(h, 0) + d.get("dark", {}).get(h, 0)}
        res["events"] = len(list((pdd / "artifacts" / ident / "job_events").glob("*.json")))
        return self._check(name, res, per_host, rdir)


def main():  # pylint: disable=too-many-locals
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--state-dir", required=True, help="tests/harness/servers.py state dir of running servers")
    ap.add_argument("--databases", type=int, default=12)
    ap.add_argument("--forks", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work dir and the databases")
    args = ap.parse_args()
    info = harness.load_info(args.state_dir)
    servers = {n: Server(n, i) for n, i in info.items()}
    env = benchlib.environment(info)
    subprocess.run(["bash", str(REPO / "scripts" / "collection-tree.sh")], check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    work = Path(tempfile.mkdtemp(prefix="runner_bench-"))
    fleet = make_fleet(servers, args.databases)
    results = {"playbook": [], "runner": [], "mitogen": []}
    try:
        bench = Bench(work, inventory(fleet), args.forks)
        log("fleet: %d databases on %s; work dir %s" % (len(fleet), ", ".join(sorted(servers)), work))
        first = bench.playbook("warm-up")  # the fix is in the seeds: this run must already change nothing
        for rep in range(args.reps):
            log("rep %d/%d" % (rep + 1, args.reps))
            results["playbook"].append(bench.playbook("ansible-playbook"))
            results["runner"].append(bench.runner())
            results["mitogen"].append(bench.playbook("mitogen_linear", strategy="mitogen_linear"))
    finally:
        if not args.keep:
            for _host, server, db in fleet:
                server.drop_database(db)
            shutil.rmtree(work, ignore_errors=True)
    benchlib.finish(env)

    def best(runs):
        ok = [r["wall_s"] for r in runs if r["ok"]]
        return min(ok) if len(ok) == len(runs) and ok else None

    bp, br, bm = best(results["playbook"]), best(results["runner"]), best(results["mitogen"])
    same = bool(results["mitogen"]) and all(r["outcomes"] == results["playbook"][0]["outcomes"] and r["ok"]
                                            for r in results["mitogen"])
    goals = [("ansible-runner re-run within 10 %% of ansible-playbook (best of %d)" % args.reps,
              None if bp is None or br is None else br <= 1.10 * bp),
             ("mitogen_linear runs maintenance.yml with the same result as the linear strategy",
              None if not results["mitogen"] or bp is None else same)]
    doc = {"bench": "runner_bench", "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "databases": len(fleet), "forks": args.forks, "reps": args.reps, "environment": env, "first": first,
           "runs": results, "best_s": {"ansible-playbook": bp, "ansible-runner": br, "mitogen_linear": bm},
           "ratios": {"runner/playbook": round(br / bp, 3) if bp and br else None,
                      "mitogen/playbook": round(bm / bp, 3) if bp and bm else None},
           "goals": [{"goal": n, "met": m} for n, m in goals]}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = REPO / "bench" / "results"
    (out_dir / ("runner_bench_%s.json" % stamp)).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    lines = ["# runner_bench %s" % doc["when"], "",
             "maintenance.yml idempotent re-run, %d databases (%s), forks %d, best of %d alternated runs." % (
                 len(fleet), ", ".join(sorted(servers)), args.forks, args.reps), "",
             benchlib.describe(env), "",
             "| way | best wall s | runs (wall s) | CPU s (best run) | ratio to ansible-playbook |",
             "|---|---|---|---|---|"]
    for key, label, b in (("playbook", "ansible-playbook", bp), ("runner", "ansible-runner", br),
                          ("mitogen", "ansible-playbook + mitogen_linear", bm)):
        runs = results[key]
        cpu = min((r["cpu_s"] for r in runs if r["wall_s"] == b), default=None)
        walls = ", ".join("%.2f%s" % (r["wall_s"], "" if r["ok"] else "!") for r in runs)
        lines.append("| %s | %s | %s | %s | %s |" % (
            label, "%.2f" % b if b else "failed", walls,
            "%.2f" % cpu if cpu is not None else "-", "%.3f" % (b / bp) if b and bp else "-"))
    lines += [""] + benchlib.goals_text(goals)
    (out_dir / ("runner_bench_%s.md" % stamp)).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
