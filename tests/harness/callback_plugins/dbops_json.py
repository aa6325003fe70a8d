# -*- coding: utf-8 -*-
# Stdout callback of the test harness (tests/integration/ansible_run.py).
#
# ansible-core 2.19 no longer ships a JSON stdout callback (ansible.builtin.json
# redirects to ansible.posix.json, which is not installed here), so the harness
# brings this small one: every task result per host, printed at the end of the
# run as one JSON document between two marker lines.

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: dbops_json
type: stdout
short_description: JSON task results for the dbops.maintenance test harness
description:
  - Prints one JSON document with every task result per host at the end of the playbook run,
    between the lines C(=== DBOPS_JSON_BEGIN ===) and C(=== DBOPS_JSON_END ===).
  - Same shape as ansible.posix.json (C(plays[].tasks[].hosts[host]) and C(stats)).
author: dbops.maintenance test harness
"""

BEGIN = "=== DBOPS_JSON_BEGIN ==="
END = "=== DBOPS_JSON_END ==="


def _result_dict(result):
    """The task result as a plain dict (ansible-core 2.19 ``result``, older ``_result``)."""
    res = getattr(result, "result", None)
    if res is None:
        res = result._result  # pylint: disable=protected-access
    return {k: v for k, v in dict(res).items() if not k.startswith("_ansible")}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "dbops_json"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plays = []

    def _new_play(self, name="", uuid=""):
        self.plays.append({"play": {"name": name, "id": uuid}, "tasks": []})

    def v2_playbook_on_play_start(self, play):
        self._new_play(play.get_name(), str(getattr(play, "_uuid", "")))

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self.plays:
            self._new_play()
        self.plays[-1]["tasks"].append({
            "task": {"name": task.get_name(), "action": task.action,
                     "id": str(getattr(task, "_uuid", ""))},
            "hosts": {},
        })

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _record(self, result, **extra):
        if not self.plays or not self.plays[-1]["tasks"]:
            self.v2_playbook_on_task_start(result._task, False)  # pylint: disable=protected-access
        res = _result_dict(result)
        res.update(extra)
        host = result._host.get_name()  # pylint: disable=protected-access
        self.plays[-1]["tasks"][-1]["hosts"][host] = res
        stream = os.environ.get("DBOPS_JSON_STREAM")
        if stream:  # a PlaybookSession (ansible_run.py) reads each result as soon as its task ends
            line = json.dumps({"task": self.plays[-1]["tasks"][-1]["task"]["name"], "host": host, "result": res},
                              sort_keys=True, default=str)
            with open(stream, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {host: stats.summarize(host) for host in sorted(stats.processed.keys())}
        doc = {"plays": self.plays, "stats": summary}
        self._display.display(BEGIN)
        self._display.display(json.dumps(doc, indent=2, sort_keys=True, default=str))
        self._display.display(END)
