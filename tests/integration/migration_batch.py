"""Run many module tasks in ONE ansible-playbook (each ansible-playbook start costs ~3 s).

``run_tasks(ansible, tasks, output=False)``: tasks is a list of dicts ``{"name", "module", "args", "check",
"diff", "env"}`` or ``{"name", "shell": "..."}`` (a local command, e.g. to move a migration file); every task
has ``ignore_errors``; returns {name: result dict} parsed from the dbops_json callback (with output=True also
``_stdout`` / ``_stderr``: the run's whole output, for tests that a secret never reaches it).
When ``ansible`` is an ``ansible_run.PlaybookSession`` (and output is False) the tasks are one include of
its long-lived ansible-playbook instead of a playbook of their own: same tasks, same results, no start-up.
"""

from __future__ import annotations

import json

from ansible_run import JSON_BEGIN, JSON_END, _write_private, to_yaml
from conftest import DB


def run_tasks(ansible, tasks, output=False):
    play_tasks = []
    for t in tasks:
        if "shell" in t:
            entry = {"name": t["name"], "ansible.builtin.shell": t["shell"], "changed_when": False}
        else:
            entry = {"name": t["name"], t["module"]: t["args"], "register": "r"}
            if t.get("check"):
                entry["check_mode"] = True
            if t.get("diff"):
                entry["diff"] = True
            if t.get("env"):
                entry["environment"] = t["env"]
        entry["ignore_errors"] = True
        play_tasks.append(entry)
    in_session = None
    if not output and hasattr(ansible, "run_play_tasks"):
        in_session = ansible.run_play_tasks(play_tasks)
    if in_session is not None:
        path, results = in_session
        out = {t["name"]: results[t["name"]] for t in tasks if t["name"] in results}
        stdout = "(tasks of %s, in a PlaybookSession)" % path
    else:
        run_dir = ansible._run_dir()  # pylint: disable=protected-access
        playbook = _write_private(run_dir / "playbook.yml", to_yaml(
            [{"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}]))
        cmd = [ansible.ansible_playbook, "-i", ansible.inventory, playbook]
        rc, stdout, stderr = ansible._exec(cmd, run_dir, ansible.environment(run_dir, "dbops_json"))  # pylint: disable=protected-access
        begin, end = stdout.rfind(JSON_BEGIN), stdout.rfind(JSON_END)
        if begin < 0 or end < begin or rc not in (0, 2):
            raise AssertionError("ansible-playbook broke rc=%s\n%s\n%s" % (rc, stdout[-3000:], stderr[-3000:]))
        doc = json.loads(stdout[begin + len(JSON_BEGIN):end])
        out = {}
        for play in doc["plays"]:
            for t in play["tasks"]:
                out[t["task"]["name"]] = t["hosts"].get("localhost", {})
    for res in out.values():
        res.setdefault("changed", False)
        res.setdefault("failed", False)
    missing = [t["name"] for t in tasks if t["name"] not in out]
    if missing:
        raise AssertionError("tasks did not run: %s\n%s" % (missing, stdout[-3000:]))
    if output:
        out["_stdout"], out["_stderr"] = stdout, stderr
    return out


# A database on a harness Server, for fixtures that choose the server themselves: conftest's own DB.
ServerDB = DB


def pg16_db(request):
    """A new database on the PostgreSQL 16 server (a ServerDB; .server is the server), dropped after the test."""
    server = request.getfixturevalue("servers")["pg16"]
    name = server.create_database()
    request.addfinalizer(lambda: server.drop_database(name))
    return ServerDB(server, name)
