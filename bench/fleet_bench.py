"""Benchmark: playbooks/maintenance.yml over a fleet of database instances vs the same fix "the plain way".

A fleet of real server instances on this machine (default 20: 12 PostgreSQL 15 + 8 MariaDB 10.11, each its
own server process on its own loopback address, started in parallel with tests/harness/servers.py
--instances), one inventory host per instance (connection local, the venv's python). Each instance gets a
database ``appdb`` seeded like the incidents: PostgreSQL enum "CredentialType" without PERSONAL_ACCESS_TOKEN
and a table "ExternalCredential" of --rows rows; MariaDB shipment_records with an ENUM status column without
RETURNED. The fix is declared in dbops_enums (host group vars).

For each forks value (default 5,10), --reps times (at least 2, default 2: about 26 minutes), alternating the
two ways (A B A B, so a drift in the machine's load hits both):

    reset seeds -> maintenance.yml first run -> maintenance.yml re-run (must be changed=0)
    reset seeds -> plain way first run (bench/fleet_plain.yml) -> plain way re-run (must be changed=0)

maintenance.yml runs with -e dbops_serial=100% (its default canary batches "1,30%,100%" would run the first
host alone and serialise the forks). The plain way is ansible.builtin.command calling psql / pg_dump and
mariadb / mariadb-dump per step (check SELECT; when missing: dump + ALTER; verify SELECT).

Measured per run: wall time, CPU of ansible-playbook and everything it started (os.wait4 rusage: workers,
module processes, psql/pg_dump), the controller process's own CPU (sampled from /proc), the database
servers' CPU (from /proc), the recap counters (from bench/callback_plugins/fleet_timing.py and checked
against the PLAY RECAP), the load average before and after; where the time of maintenance.yml goes (per
task and role, from the callback). Goal: the idempotent re-run of maintenance.yml no slower than the plain
way's re-run (best of the reps, per forks value), the ratio printed. The commit and uncommitted files, the
ansible and server versions and the load before and after are recorded (bench/benchlib.py). Exit 0 when every
goal was evaluated and met, 1 when one was not met, 2 when one could not be evaluated (a run failed or is
missing).

    .venv/bin/python bench/fleet_bench.py [--forks 5,10] [--instances 20] [--reps 2] [--keep] [--state-dir DIR]

Results: bench/results/fleet_bench_<UTC>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position
sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

BIN = Path(sys.executable).parent
DATABASE = "appdb"
PG_ENUM = {"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]}
MY_ENUM = {"table": "shipment_records", "column": "status", "values": ["RETURNED"]}
MY_DEFINITION = "ENUM('PENDING','SHIPPED','DELIVERED','RETURNED') NOT NULL DEFAULT 'PENDING'"
PG_SEED = [
    '''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE', 'OAUTH_TOKEN')''',
    '''CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, platform text NOT NULL,
         type "CredentialType" NOT NULL, "createdAt" timestamptz NOT NULL DEFAULT now())''',
    '''INSERT INTO "ExternalCredential" (platform, type)
         SELECT 'PLATFORM_' || (g % 17), (ARRAY['API_KEY','COOKIE','OAUTH_TOKEN'])[1 + g % 3]::"CredentialType"
         FROM generate_series(1, %(rows)s) g''',
]
MY_SEED = [
    '''CREATE TABLE shipment_records (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
         trackingNumber varchar(64) NOT NULL,
         status ENUM('PENDING', 'SHIPPED', 'DELIVERED') NOT NULL DEFAULT 'PENDING',
         createdAt datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4''',
]
CONTROLLER_ACTIONS = {"ansible.builtin.set_fact", "set_fact", "ansible.builtin.debug", "debug",
                      "ansible.builtin.assert", "assert", "ansible.builtin.fail", "fail",
                      "ansible.builtin.include_role", "include_role", "ansible.builtin.include_tasks",
                      "include_tasks", "ansible.builtin.set_stats", "set_stats", "meta", "ansible.builtin.meta",
                      "ansible.builtin.validate_argument_spec", "validate_argument_spec"}
CLK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("fleet_bench: %s" % msg, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as f:
        return [float(x) for x in f.read().split()[:3]]


def write_private(path, text):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


# --------------------------------------------------------------------------
# /proc: CPU and memory of processes
# --------------------------------------------------------------------------

def _stat(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17, ppid=4
    return {"ppid": int(fields[1]), "utime": int(fields[11]), "stime": int(fields[12]),
            "cutime": int(fields[13]), "cstime": int(fields[14])}


def _children():
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                kids.setdefault(st["ppid"], []).append(int(entry))
    return kids


def server_pids(info):
    """{instance name: main server pid} from the harness state."""
    out = {}
    for name, inf in info.items():
        if inf.get("engine") == "postgresql":
            pid_file = os.path.join(inf["data_dir"], "postmaster.pid")
        else:
            pid_file = os.path.join(os.path.dirname(inf["data_dir"]), "mariadbd.pid")
        try:
            with open(pid_file, encoding="ascii") as f:
                out[name] = int(f.readline().strip())
        except (OSError, ValueError):
            pass
    return out


def servers_cpu(pids):
    """Seconds of CPU used so far by the servers: each main process with its reaped children (PostgreSQL
    backends) and its live children."""
    kids = _children()
    total = 0
    for pid in pids.values():
        st = _stat(pid)
        if not st:
            continue
        total += st["utime"] + st["stime"] + st["cutime"] + st["cstime"]
        for child in kids.get(pid, []):
            cst = _stat(child)
            if cst:
                total += cst["utime"] + cst["stime"]
    return total / CLK


def servers_memory(pids):
    """Sum of RSS and of PSS (kB) over every process of every server (PostgreSQL: postmaster + children)."""
    kids = _children()
    rss = pss = 0
    nproc = 0
    for pid in pids.values():
        for p in [pid] + kids.get(pid, []):
            try:
                with open("/proc/%d/smaps_rollup" % p, encoding="ascii") as f:
                    for line in f:
                        if line.startswith("Rss:"):
                            rss += int(line.split()[1])
                        elif line.startswith("Pss:"):
                            pss += int(line.split()[1])
                nproc += 1
            except OSError:
                pass
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1), "processes": nproc}


# --------------------------------------------------------------------------
# fleet
# --------------------------------------------------------------------------

def fleet_spec(n_instances, n_mariadb, pg_prefix, my_prefix):
    n_pg = n_instances - n_mariadb
    # three digits: "pg15"/"pg16" are the harness's own instance names, which a 50-instance fleet would reach
    hosts = [{"name": "pg%03d" % (i + 1), "kind": "pg15", "engine": "postgresql",
              "address": "%s.%d" % (pg_prefix, i + 1)} for i in range(n_pg)]
    hosts += [{"name": "my%03d" % (i + 1), "kind": "mariadb", "engine": "mysql",
               "address": "%s.%d" % (my_prefix, i + 1)} for i in range(n_mariadb)]
    return hosts


def reset_one(host, inf, password, rows):
    if host["engine"] == "postgresql":
        import psycopg  # pylint: disable=import-outside-toplevel
        common = {"host": inf["login_host"], "port": inf["login_port"], "user": inf["login_user"],
                  "password": password, "connect_timeout": 10, "sslmode": "disable"}
        with psycopg.connect(dbname="postgres", autocommit=True, **common) as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DATABASE)
            conn.execute("CREATE DATABASE %s" % DATABASE)
        with psycopg.connect(dbname=DATABASE, **common) as conn:
            for stmt in PG_SEED:
                conn.execute(stmt.replace("%(rows)s", str(int(rows))))
    else:
        import pymysql  # pylint: disable=import-outside-toplevel
        conn = pymysql.connect(host=inf["login_host"], port=inf["login_port"], user=inf["login_user"],
                               password=password, connect_timeout=10, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS %s" % DATABASE)
                cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4" % DATABASE)
                cur.execute("USE %s" % DATABASE)
                for stmt in MY_SEED:
                    cur.execute(stmt)
                statuses = ("PENDING", "SHIPPED", "DELIVERED")
                cur.executemany("INSERT INTO shipment_records (trackingNumber, status) VALUES (%s, %s)",
                                [("TRK-%06d" % i, statuses[i % 3]) for i in range(int(rows))])
        finally:
            conn.close()


def reset_fleet(fleet, info, password, rows, work):
    t = time.perf_counter()
    for host in fleet:
        hdir = work / "hosts" / host["name"]
        shutil.rmtree(hdir, ignore_errors=True)
        hdir.mkdir(mode=0o700, parents=True)
    shutil.rmtree(work / "reports", ignore_errors=True)
    (work / "reports").mkdir(mode=0o700)
    with ThreadPoolExecutor(max_workers=len(fleet)) as pool:
        list(pool.map(lambda h: reset_one(h, info[h["name"]], password, rows), fleet))
    return time.perf_counter() - t


def write_inventory(fleet, info, work, password_file, name="inventory.yml"):
    pg_hosts, my_hosts = {}, {}
    for host in fleet:
        inf = info[host["name"]]
        hv = {"ansible_host": host["address"], "dbops_login_host": inf["login_host"],
              "dbops_login_port": inf["login_port"],
              "dbops_backup_dir": str(work / "hosts" / host["name"] / "backups")}
        (pg_hosts if host["engine"] == "postgresql" else my_hosts)[host["name"]] = hv
    children = {}
    if pg_hosts:
        children["dbops_postgresql"] = {"hosts": pg_hosts, "vars": {
            "dbops_engine": "postgresql", "dbops_enums": [PG_ENUM], "plain_table": "ExternalCredential"}}
    if my_hosts:
        children["dbops_mysql"] = {"hosts": my_hosts, "vars": {
            "dbops_engine": "mysql", "dbops_enums": [MY_ENUM], "plain_table": MY_ENUM["table"],
            "plain_definition": MY_DEFINITION}}
    inv = {"all": {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "dbops_login_user": harness.ADMIN_USER,
            "dbops_login_password": "{{ lookup('ansible.builtin.file', '%s') }}" % password_file,
            "dbops_database": DATABASE,
            "dbops_report_dir": str(work / "reports"),
        },
        "children": {"dbops_databases": {"children": children}},
    }}
    path = work / name
    write_private(path, "# written by bench/fleet_bench.py\n" + yaml.safe_dump(inv, sort_keys=False, width=1000))
    return path


# --------------------------------------------------------------------------
# one ansible-playbook run
# --------------------------------------------------------------------------

RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+"
                      r"skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)")


def parse_recap(text):
    out = {}
    in_recap = False
    for line in text.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        m = RECAP_RE.match(line.strip()) if in_recap else None
        if m:
            out[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                               "failures": int(m.group(5)), "skipped": int(m.group(6)),
                               "rescued": int(m.group(7)), "ignored": int(m.group(8))}
    return out


# pylint: disable-next=too-many-arguments,too-many-positional-arguments,too-many-locals
def run_playbook(label, playbook, inventory, forks, work, extra_args, pipelining, pids):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    timing = work / ("timing-%s.json" % label)
    out_file = work / ("out-%s.txt" % label)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"),
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "bench" / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="fleet_timing", FLEET_TIMING_OUT=str(timing),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_PIPELINING="1" if pipelining else "0",
               ANSIBLE_LOCAL_TEMP=str(work / "ansible-local"), ANSIBLE_HOME=str(work / "ansible-home"))
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), "-f", str(forks), str(playbook)] + extra_args
    load_before = loadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    srv_before = servers_cpu(pids)
    own = {"cpu": 0.0}
    with open(out_file, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=out, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with
        done = threading.Event()

        def sample():
            while not done.wait(0.1):
                st = _stat(proc.pid)
                if st:
                    own["cpu"] = (st["utime"] + st["stime"]) / CLK

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    srv_after = servers_cpu(pids)
    load_after = loadavg()
    text = out_file.read_text(encoding="utf-8", errors="replace")
    recap_text = parse_recap(text)
    cb = {}
    with contextlib.suppress(OSError, ValueError):
        cb = json.loads(timing.read_text(encoding="utf-8"))
    recap = cb.get("recap") or recap_text
    return {
        "label": label, "started_utc": started, "rc": proc.returncode, "wall_s": round(wall, 3),
        "cpu_total_s": round(ru.ru_utime + ru.ru_stime, 2),
        "cpu_user_s": round(ru.ru_utime, 2), "cpu_sys_s": round(ru.ru_stime, 2),
        "cpu_controller_s": round(own["cpu"], 2), "cpu_servers_s": round(srv_after - srv_before, 2),
        "load_before": load_before, "load_after": load_after,
        "hosts": len(recap), "changed": sum(r.get("changed", 0) for r in recap.values()),
        "changed_hosts": sum(1 for r in recap.values() if r.get("changed", 0)),
        "failures": sum(r.get("failures", 0) + r.get("unreachable", 0) for r in recap.values()),
        "recap_matches_stdout": {h: {k: r.get(k) for k in ("ok", "changed", "failures", "skipped")}
                                 for h, r in recap.items()}
        == {h: {k: r.get(k) for k in ("ok", "changed", "failures", "skipped")} for h, r in recap_text.items()},
        "timing": cb, "output_tail": "\n".join(text.splitlines()[-40:]) if proc.returncode else "",
    }


# --------------------------------------------------------------------------
# where the time goes
# --------------------------------------------------------------------------

def analyse(timing, n_hosts):  # pylint: disable=too-many-locals
    """Per task: hosts run/skipped, wall (task start -> next task start), per-host durations."""
    tasks = timing.get("tasks") or []
    if not tasks:
        return {}
    end = timing.get("end") or max(t["start"] for t in tasks)
    rows = []
    for i, t in enumerate(tasks):
        nxt = tasks[i + 1]["start"] if i + 1 < len(tasks) else end
        hosts = t.get("hosts", {})
        ran = [h for h in hosts.values() if h.get("status") and h["status"] != "skipped"]
        skipped = [h for h in hosts.values() if h.get("status") == "skipped"]
        durs = [h["end"] - h["start"] for h in ran if "start" in h and "end" in h]
        rows.append({"name": t["name"], "role": t.get("role") or "(playbook)", "action": t["action"],
                     "controller_only": t["action"] in CONTROLLER_ACTIONS,
                     "ran": len(ran), "skipped": len(skipped), "wall_s": round(nxt - t["start"], 3),
                     "host_mean_s": round(statistics.mean(durs), 3) if durs else None})
    total = end - (timing.get("t0") or tasks[0]["start"])
    by_role = {}
    for r in rows:
        b = by_role.setdefault(r["role"], {"tasks": 0, "wall_s": 0.0, "host_results": 0, "module_runs": 0})
        b["tasks"] += 1
        b["wall_s"] += r["wall_s"]
        b["host_results"] += r["ran"]
        b["module_runs"] += 0 if r["controller_only"] else r["ran"]
    for b in by_role.values():
        b["wall_s"] = round(b["wall_s"], 2)
    module_durs = [r["host_mean_s"] for r in rows if not r["controller_only"] and r["host_mean_s"] is not None]
    ctl_durs = [r["host_mean_s"] for r in rows if r["controller_only"] and r["host_mean_s"] is not None
                and r["action"] in ("ansible.builtin.set_fact", "set_fact", "ansible.builtin.debug", "debug")]
    ran = sum(r["ran"] for r in rows)
    return {
        "task_starts": len(rows), "includes": timing.get("includes", 0),
        "host_results_run": ran, "host_results_skipped": sum(r["skipped"] for r in rows),
        "tasks_run_per_host": round(ran / n_hosts, 1),
        "module_runs_per_host": round(sum(r["ran"] for r in rows if not r["controller_only"]) / n_hosts, 1),
        "callback_span_s": round(total, 2),
        "wall_per_task_start_s": round(sum(r["wall_s"] for r in rows) / len(rows), 3),
        "median_host_duration_module_task_s": round(statistics.median(module_durs), 3) if module_durs else None,
        "median_host_duration_set_fact_debug_s": round(statistics.median(ctl_durs), 3) if ctl_durs else None,
        "by_role": dict(sorted(by_role.items(), key=lambda kv: -kv[1]["wall_s"])),
        "top_tasks": sorted(rows, key=lambda r: -r["wall_s"])[:12],
        "tasks": rows,
    }


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def summarise(runs):
    walls = [r["wall_s"] for r in runs]
    return {"n": len(runs), "wall_best_s": min(walls), "wall_mean_s": round(statistics.mean(walls), 3),
            "cpu_total_mean_s": round(statistics.mean(r["cpu_total_s"] for r in runs), 2),
            "cpu_controller_mean_s": round(statistics.mean(r["cpu_controller_s"] for r in runs), 2),
            "cpu_servers_mean_s": round(statistics.mean(r["cpu_servers_s"] for r in runs), 2),
            "changed": [r["changed"] for r in runs], "failures": [r["failures"] for r in runs],
            "load1": [[r["load_before"][0], r["load_after"][0]] for r in runs]}


# pylint: disable-next=too-many-arguments,too-many-positional-arguments,too-many-locals
def run_sequence(doc, fleet, info, inventory, forks, rep, work, password, a, pids, scale=False):
    """reset -> maintenance first run -> re-run; reset -> plain first run -> re-run (one rep at one forks value)."""
    for way, playbook, extra in (
            ("maintenance", REPO / "playbooks" / "maintenance.yml", ["-e", "dbops_serial=100%"]),
            ("plain", REPO / "bench" / "fleet_plain.yml", [])):
        reset_s = reset_fleet(fleet, info, password, a.rows, work)
        if "servers_memory_after_seed" not in doc:
            doc["servers_memory_after_seed"] = servers_memory(pids)
        for phase in ("first", "rerun"):
            label = "%s-%s-f%d-r%d%s" % (way, phase, forks, rep, "-n%d" % len(fleet) if scale else "")
            r = run_playbook(label, playbook, inventory, forks, work, extra, a.pipelining, pids)
            r.update(way=way, phase=phase, forks=forks, rep=rep, reset_s=round(reset_s, 1), hosts_in_fleet=len(fleet),
                     scale=scale)
            problems = []
            if r["rc"] != 0 or r["failures"]:
                problems.append("rc %s, %d failures" % (r["rc"], r["failures"]))
            if r["hosts"] != len(fleet):
                problems.append("%d hosts in the recap, expected %d" % (r["hosts"], len(fleet)))
            if phase == "first" and r["changed_hosts"] != len(fleet):
                problems.append("first run changed %d hosts of %d" % (r["changed_hosts"], len(fleet)))
            if phase == "rerun" and r["changed"]:
                problems.append("re-run not idempotent: changed=%d" % r["changed"])
            if not r["recap_matches_stdout"]:
                problems.append("callback recap differs from the PLAY RECAP")
            r["problems"] = problems
            r["analysis"] = analyse(r.pop("timing"), len(fleet)) if way == "maintenance" else {}
            doc["runs"].append(r)
            partial_path(doc).write_text(json.dumps(doc, indent=1, default=str) + "\n")  # what ran so far
            if problems:
                doc["errors"].append("%s: %s" % (label, "; ".join(problems)))
                log("%s: PROBLEM %s\n%s" % (label, "; ".join(problems), r["output_tail"]))
            log("%-28s wall %6.1f s  cpu %6.1f s (controller %5.1f, servers %4.1f)  changed %3d  "
                "load %.2f -> %.2f" % (label, r["wall_s"], r["cpu_total_s"], r["cpu_controller_s"],
                                       r["cpu_servers_s"], r["changed"], r["load_before"][0],
                                       r["load_after"][0]))


def main():  # pylint: disable=too-many-locals,too-many-statements,too-many-branches,too-many-nested-blocks
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forks", default="5,10")
    ap.add_argument("--instances", type=int, default=20, help="server instances = inventory hosts (default 20)")
    ap.add_argument("--mariadb", type=int, help="how many of them are MariaDB (default 40%%, i.e. 8 of 20)")
    ap.add_argument("--reps", type=int, default=2, help="sequences per forks value, at least 2: maintenance.yml and "
                    "the plain playbook alternate (A B A B), so a drift in the load hits both (default 2: about 26 "
                    "minutes on a loaded 2-CPU machine)")
    ap.add_argument("--rows", type=int, default=1000, help="rows of each seeded table")
    ap.add_argument("--pipelining", action="store_true", help="ANSIBLE_PIPELINING=1 for every run (default off, "
                    "as ansible-core and AWX ship)")
    ap.add_argument("--pg-prefix", default="127.0.70", help="PostgreSQL instances listen on PREFIX.1, .2, ...")
    ap.add_argument("--mariadb-prefix", default="127.0.71")
    ap.add_argument("--state-dir", help="harness state dir (use/reuse servers started there; default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="leave the servers running (and the state dir)")
    ap.add_argument("--scale", type=int, default=0, help="then this many instances in all (e.g. 50) at forks 10, "
                    "once: per-host cost of the re-run against the --instances figure (default 0: not run)")
    a = ap.parse_args()
    if a.reps < 2:
        log("--reps 1: each way runs once per forks value (maintenance, then plain, back to back); with 2 or more "
            "they alternate A B A B, so a drift in the load hits both")
    forks_list = [int(f) for f in a.forks.split(",") if f]
    n_my = a.mariadb if a.mariadb is not None else round(a.instances * 0.4)
    fleet = fleet_spec(a.instances, n_my, a.pg_prefix, a.mariadb_prefix)
    subprocess.run(["bash", str(REPO / "scripts" / "collection-tree.sh")], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="dbops-fleetbench-", dir="/tmp"))
    os.chmod(work, 0o711)
    state = Path(a.state_dir).resolve() if a.state_dir else work / "servers"
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o711)
    state2 = state.parent / (state.name + "-scale")
    started2 = [False]
    password_file = state / "fleet-password"
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(24) + "\n")
    password = password_file.read_text(encoding="utf-8").strip()
    doc = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "argv": sys.argv[1:], "fleet": fleet, "forks": forks_list, "reps": a.reps, "rows": a.rows,
           "pipelining": a.pipelining, "cpus": os.cpu_count(), "runs": [], "errors": [], "code": code_state(),
           "environment": benchlib.environment()}
    stopped = False
    try:  # pylint: disable=too-many-nested-blocks
        spec = ",".join("%s=%s@%s" % (h["name"], h["kind"], h["address"]) for h in fleet)
        mem_before = _meminfo_used_mib()
        load = loadavg()
        t = time.perf_counter()
        info = harness.start(str(state), instances=spec, password_file=str(password_file))
        doc["servers_start_s"] = round(time.perf_counter() - t, 1)
        doc["servers_start_load"] = [load, loadavg()]
        info = {h["name"]: info[h["name"]] for h in fleet}
        pids = server_pids(info)
        doc["versions"] = sorted({"%s %s" % (i["engine"], i["version"]) for i in info.values()})
        doc["environment"]["servers"] = doc["versions"]
        log("%d instances ready in %.1f s (%s)" % (len(info), doc["servers_start_s"], ", ".join(doc["versions"])))
        inventory = write_inventory(fleet, info, work, password_file)
        doc["psql"] = shutil.which("psql")
        doc["psql_is_pg_wrapper"] = os.path.realpath(doc["psql"] or "").endswith("pg_wrapper")
        doc["host_memory_used_mib"] = [mem_before]
        for rep in range(1, a.reps + 1):
            for forks in forks_list:
                run_sequence(doc, fleet, info, inventory, forks, rep, work, password, a, pids)
        doc["servers_memory_end"] = servers_memory(pids)
        doc["host_memory_used_mib"].append(_meminfo_used_mib())
        if a.scale:
            # as many instances as asked (--scale), at forks 10: the 20 above plus the rest, started in a second
            # state dir; the same sequence once, per-host cost compared with the 20-host figure
            n_my_all = round(a.scale * n_my / a.instances)
            big = fleet_spec(a.scale, n_my_all, a.pg_prefix, a.mariadb_prefix)
            names = {h["name"] for h in fleet}
            extra_hosts = [h for h in big if h["name"] not in names]
            state2.mkdir(parents=True, exist_ok=True)
            os.chmod(state2, 0o711)
            spec2 = ",".join("%s=%s@%s" % (h["name"], h["kind"], h["address"]) for h in extra_hosts)
            load = loadavg()
            t = time.perf_counter()
            info2 = harness.start(str(state2), instances=spec2, password_file=str(password_file))
            started2[0] = True
            doc["scale_servers_start_s"] = round(time.perf_counter() - t, 1)
            doc["scale_servers_start_load"] = [load, loadavg()]
            info_all = dict(info, **{h["name"]: info2[h["name"]] for h in extra_hosts})
            pids_all = server_pids(info_all)
            fleet_all = fleet + extra_hosts
            inventory_all = write_inventory(fleet_all, info_all, work, password_file, name="inventory-scale.yml")
            doc["scale_fleet"] = len(fleet_all)
            log("scale: %d instances ready in %.1f s" % (len(fleet_all), doc["scale_servers_start_s"]))
            run_sequence(doc, fleet_all, info_all, inventory_all, 10, 1, work, password, a, pids_all, scale=True)
            doc["scale_servers_memory"] = servers_memory(pids_all)
    finally:
        if not a.keep:
            harness.stop(str(state))
            if started2[0]:
                harness.stop(str(state2))
                shutil.rmtree(state2, ignore_errors=True)
            stopped = True
            shutil.rmtree(work, ignore_errors=True)
            if a.state_dir is None:
                shutil.rmtree(state, ignore_errors=True)
        else:
            log("kept: servers in %s, work dir %s (stop: .venv/bin/python tests/harness/servers.py stop "
                "--state-dir %s)" % (state, work, state))
    doc["servers_stopped"] = stopped
    raw = partial_path(doc)
    raw.write_text(json.dumps(doc, indent=1, default=str) + "\n")  # kept until the report is written
    code = report(doc, len(fleet))
    raw.unlink()
    return code


def partial_path(doc):
    """bench/results/fleet_bench_partial_<start>.json: the runs so far (a bench cut short keeps what it measured)."""
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    return out / ("fleet_bench_partial_%s.json" % re.sub(r"[^0-9T]", "", doc["started"])[:15])


def code_state():
    """The commit, and every file that differs from it (other people edit the same working tree)."""
    return benchlib.code_state()


def _meminfo_used_mib():
    vals = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            k, v = line.split(":", 1)
            vals[k] = int(v.split()[0])
    return round((vals["MemTotal"] - vals["MemAvailable"]) / 1024)


def report(doc, n_hosts):  # pylint: disable=too-many-locals
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    groups = {}
    for r in doc["runs"]:
        if not r.get("scale"):
            groups.setdefault((r["forks"], r["way"], r["phase"]), []).append(r)
    summary = []
    for (forks, way, phase), runs in groups.items():
        s = summarise(runs)
        s.update(forks=forks, way=way, phase=phase)
        summary.append(s)
    doc["summary"] = summary
    benchlib.finish(doc["environment"])
    verdicts, goals = [], []
    for forks in doc["forks"]:
        m, p = (next((s for s in summary if s["forks"] == forks and s["way"] == way and s["phase"] == "rerun"), None)
                for way in ("maintenance", "plain"))
        name = "forks %d: maintenance.yml re-run no slower than the plain re-run" % forks
        if not (m and p) or doc["errors"]:
            goals.append((name, None))  # a failed or missing run: the goal was not evaluated
            continue
        ok = m["wall_best_s"] <= p["wall_best_s"]
        goals.append((name, ok))
        verdicts.append("forks %d: maintenance.yml re-run %.1f s (best) / %.1f s (mean) vs plain re-run %.1f / %.1f s: "
                        "%.2fx -> %s" % (forks, m["wall_best_s"], m["wall_mean_s"], p["wall_best_s"], p["wall_mean_s"],
                                         m["wall_best_s"] / p["wall_best_s"], "met" if ok else "NOT met"))
        mf, pf = (next((s for s in summary if s["forks"] == forks and s["way"] == way and s["phase"] == "first"), None)
                  for way in ("maintenance", "plain"))
        name = "forks %d: maintenance.yml first run no slower than 1.5x the plain first run" % forks
        if not (mf and pf):
            goals.append((name, None))
            continue
        ok = mf["wall_best_s"] <= 1.5 * pf["wall_best_s"]
        goals.append((name, ok))
        verdicts.append("forks %d: maintenance.yml first run %.1f s (best) vs plain first run %.1f s: %.2fx (goal <= 1.5x) "
                        "-> %s" % (forks, mf["wall_best_s"], pf["wall_best_s"], mf["wall_best_s"] / pf["wall_best_s"],
                                   "met" if ok else "NOT met"))
    scale_runs = [r for r in doc["runs"] if r.get("scale")]
    if doc.get("scale_fleet"):
        name = "%d instances at forks 10: per-host cost of the re-run within 10%% of the %d-host figure" % (
            doc["scale_fleet"], n_hosts)
        small = next((s for s in summary if s["forks"] == 10 and s["way"] == "maintenance" and s["phase"] == "rerun"), None)
        big = next((r for r in scale_runs if r["way"] == "maintenance" and r["phase"] == "rerun"), None)
        if not (small and big) or any(r["problems"] for r in scale_runs):
            goals.append((name, None))
        else:
            per_small, per_big = small["wall_best_s"] / n_hosts, big["wall_s"] / doc["scale_fleet"]
            ok = per_big <= 1.10 * per_small
            goals.append((name, ok))
            verdicts.append("%d instances, forks 10: maintenance.yml re-run %.1f s = %.3f s per host vs %.3f s per host "
                            "with %d (%+.1f %%) -> %s" % (doc["scale_fleet"], big["wall_s"], per_big, per_small, n_hosts,
                                                          100.0 * (per_big / per_small - 1), "met" if ok else "NOT met"))
    met = benchlib.exit_code(goals) == 0
    doc["verdicts"] = verdicts
    doc["goals"] = [dict(goal=n, met=g) for n, g in goals]
    doc["goal_met"] = met
    lines = ["# Fleet benchmark (%s)" % stamp, "",
             "%d hosts (%s), one server instance each, connection local; %d rep(s); pipelining %s; versions: %s." % (
                 n_hosts, ", ".join("%d %s" % (sum(1 for h in doc["fleet"] if h["kind"] == k), k)
                                    for k in sorted({h["kind"] for h in doc["fleet"]})),
                 doc["reps"], "on" if doc["pipelining"] else "off", ", ".join(doc.get("versions", []))),
             benchlib.describe(doc["environment"]) + ".",
             "Servers started in %s s; their memory after seeding: RSS %s MiB, PSS %s MiB (%s processes)." % (
                 doc.get("servers_start_s"), doc.get("servers_memory_after_seed", {}).get("rss_mib"),
                 doc.get("servers_memory_after_seed", {}).get("pss_mib"),
                 doc.get("servers_memory_after_seed", {}).get("processes")), "",
             "| forks | way | run | wall best (s) | wall mean (s) | per host (s) | CPU total (s) | CPU/host (s) | "
             "controller CPU (s) | server CPU (s) | changed | load1 before->after |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in sorted(summary, key=lambda s: (s["forks"], s["phase"], s["way"])):
        lines.append("| %d | %s | %s | %.1f | %.1f | %.2f | %.1f | %.2f | %.1f | %.1f | %s | %s |" % (
            s["forks"], s["way"], s["phase"], s["wall_best_s"], s["wall_mean_s"], s["wall_best_s"] / n_hosts,
            s["cpu_total_mean_s"], s["cpu_total_mean_s"] / n_hosts, s["cpu_controller_mean_s"],
            s["cpu_servers_mean_s"], "/".join(str(c) for c in s["changed"]),
            ", ".join("%.1f->%.1f" % tuple(x) for x in s["load1"])))
    for r in scale_runs:
        lines.append("| %d (%d hosts) | %s | %s | %.1f | %.1f | %.2f | %.1f | %.2f | %.1f | %.1f | %s | %.1f->%.1f |" % (
            r["forks"], r["hosts_in_fleet"], r["way"], r["phase"], r["wall_s"], r["wall_s"], r["wall_s"] / r["hosts_in_fleet"],
            r["cpu_total_s"], r["cpu_total_s"] / r["hosts_in_fleet"], r["cpu_controller_s"], r["cpu_servers_s"],
            r["changed"], r["load_before"][0], r["load_after"][0]))
    lines += ["", "Per host = best wall / hosts. CPU = mean over the reps of ansible-playbook and everything it "
              "started (workers, modules, psql/pg_dump/mariadb); controller = the ansible-playbook process itself; "
              "server = the database servers during the run.", ""]
    lines += ["- " + v for v in verdicts] + benchlib.goals_text(goals)
    if doc["errors"]:
        lines += ["", "Problems:"] + ["- " + e for e in doc["errors"]]
    # where the time goes: the maintenance re-run and first run with the most forks, rep 1
    for phase in ("rerun", "first"):
        cand = [r for r in doc["runs"] if r["way"] == "maintenance" and r["phase"] == phase and r.get("analysis")
                and not r.get("scale")]
        if not cand:
            continue
        r = min(cand, key=lambda r: r["wall_s"])
        an = r["analysis"]
        lines += ["", "## Where the time of maintenance.yml goes (%s, forks %d, rep %d, wall %.1f s)" % (
            phase, r["forks"], r["rep"], r["wall_s"]), "",
            "%d task starts (%d include_role), %.1f tasks run per host (%.1f of them module runs on the host), "
            "%d host-task results skipped; %.3f s of wall per task start; median per-host duration of a module "
            "task %s s, of a set_fact/debug %s s." % (
                an["task_starts"], an["includes"], an["tasks_run_per_host"], an["module_runs_per_host"],
                an["host_results_skipped"], an["wall_per_task_start_s"], an["median_host_duration_module_task_s"],
                an["median_host_duration_set_fact_debug_s"]), "",
            "| role | task starts | host results run | module runs | wall (s) |", "|---|---:|---:|---:|---:|"]
        for role, b in an["by_role"].items():
            row = (role, b["tasks"], b["host_results"], b["module_runs"], b["wall_s"])
            lines.append("| %s | %d | %d | %d | %.1f |" % row)
        lines += ["", "| slowest tasks | role | action | hosts run/skipped | wall (s) | mean per host (s) |",
                  "|---|---|---|---|---:|---:|"]
        for t in an["top_tasks"]:
            row = (t["name"], t["role"], t["action"], t["ran"], t["skipped"], t["wall_s"], t["host_mean_s"])
            lines.append("| %s | %s | %s | %d/%d | %.2f | %s |" % row)
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / ("fleet_bench_%s.json" % stamp)).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / ("fleet_bench_%s.md" % stamp)).write_text(text)
    log("results: bench/results/fleet_bench_%s.{json,md}" % stamp)
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
