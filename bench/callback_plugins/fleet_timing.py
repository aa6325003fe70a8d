# -*- coding: utf-8 -*-
# Aggregate callback of the fleet benchmark (bench/fleet_bench.py): for every task, its start, and for every
# host its start, end and status; the PLAY RECAP counters per host. Written as JSON to $FLEET_TIMING_OUT
# when the playbook ends. (ansible-core has no profile_tasks; ansible.posix is not installed here.)

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: fleet_timing
type: aggregate
short_description: Per-task, per-host timings and the recap counters for bench/fleet_bench.py
description:
  - Records time.time() when each task starts, when it starts on each host and when each host's result
    arrives (ok, changed, skipped, failed, unreachable), and the recap counters of every host, and writes
    them as JSON to the file named by E(FLEET_TIMING_OUT).
author: dbops.maintenance benchmark
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.t0 = time.time()
        self.tasks = []
        self.by_uuid = {}
        self.includes = 0

    def _task(self, task):
        uuid = getattr(task, "_uuid", None)
        entry = self.by_uuid.get(uuid)
        if entry is None:
            role = getattr(task, "_role", None)
            entry = {"name": task.get_name(), "action": task.action,
                     "role": role.get_name() if role else "", "start": time.time(), "hosts": {}}
            self.by_uuid[uuid] = entry
            self.tasks.append(entry)
        return entry

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task(task)

    def v2_playbook_on_include(self, included_file):
        self.includes += 1

    def v2_runner_on_start(self, host, task):
        self._task(task)["hosts"].setdefault(host.get_name(), {})["start"] = time.time()

    def _record(self, result, status):
        entry = self._task(result._task)  # pylint: disable=protected-access
        h = entry["hosts"].setdefault(result._host.get_name(), {})  # pylint: disable=protected-access
        h["end"] = time.time()
        h["status"] = status
        res = result._result  # pylint: disable=protected-access
        h["changed"] = bool(res.get("changed", False))

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        out = os.environ.get("FLEET_TIMING_OUT")
        if not out:
            return
        recap = {h: stats.summarize(h) for h in sorted(stats.processed)}
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"t0": self.t0, "end": time.time(), "tasks": self.tasks, "recap": recap,
                       "includes": self.includes}, f, default=str)
