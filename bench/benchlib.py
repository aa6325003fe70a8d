"""What every benchmark here records and how it compares, so its numbers can be trusted.

* ``environment(servers)``: the commit and every uncommitted file (other people edit the same tree), the
  ansible-core / Python versions, the server versions, CPUs, and the load average when called;
* ``alternate(reps, a, b)``: the two compared runs interleaved A B A B ... (a drift in the machine's load then
  hits both sides alike), returning both lists of results;
* ``ratio_line(name, a, b)``: the medians and their ratio, printed by the bench itself;
* ``exit_code(goals)``: 0 only when every goal was evaluated and met; 1 when one was not met; 2 when one
  could not be evaluated (missing size, failed run): a bench never exits 0 without having judged its goal.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as f:
        return [float(x) for x in f.read().split()[:3]]


def _run(cmd):
    try:
        return subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True, check=False, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def code_state():
    """The commit and every file that differs from it (git status --porcelain, the whole tree)."""
    return {"head": _run(["git", "rev-parse", "HEAD"]).strip(),
            "uncommitted": _run(["git", "status", "--porcelain"]).splitlines()}


def ansible_version():
    exe = Path(sys.executable).parent / "ansible"
    out = _run([str(exe), "--version"]) if exe.exists() else ""
    return out.splitlines()[0] if out else None


def environment(servers=None):
    """servers: {name: info} as tests/harness/servers.py returns it (engine, version)."""
    return {"code": code_state(), "ansible": ansible_version(), "python": sys.version.split()[0],
            "servers": sorted("%s %s %s" % (n, i.get("engine"), i.get("version")) for n, i in (servers or {}).items()),
            "cpus": os.cpu_count(), "load_before": loadavg()}


def finish(env):
    env["load_after"] = loadavg()
    return env


def describe(env):
    code = env["code"]
    dirty = sorted({ln[3:] for ln in code["uncommitted"]})
    return ("code %s%s; %s, Python %s; servers: %s; %d CPUs; load %s before, %s after" % (
        code["head"][:12], (" + uncommitted: " + ", ".join(dirty)) if dirty else " (clean)", env["ansible"],
        env["python"], ", ".join(env["servers"]) or "-", env["cpus"],
        "/".join("%.2f" % x for x in env["load_before"]),
        "/".join("%.2f" % x for x in env.get("load_after", [])) or "?"))


def alternate(reps, run_a, run_b):
    """A B A B ... reps times each; returns ([a results], [b results])."""
    a, b = [], []
    for _rep in range(reps):
        a.append(run_a())
        b.append(run_b())
    return a, b


def ratio_line(name, a, b, unit="s"):
    ma, mb = statistics.median(a), statistics.median(b)
    return ma, mb, "%s: %.3f %s vs %.3f %s (medians of %d alternated runs each): ratio %.2f" % (
        name, ma, unit, mb, unit, len(a), ma / mb if mb else float("inf"))


def exit_code(goals):
    """goals: list of (name, met) where met is True, False or None (not evaluated)."""
    if not goals or any(m is None for _n, m in goals):
        return 2
    return 0 if all(m for _n, m in goals) else 1


def goals_text(goals):
    word = {True: "MET", False: "NOT MET", None: "NOT EVALUATED"}
    return ["- goal %s: %s" % (n, word[m]) for n, m in goals] or ["- no goal was evaluated"]
