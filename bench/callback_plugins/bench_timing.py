# -*- coding: utf-8 -*-
# Aggregate callback of the DDL benchmark (bench/run_ddl_bench.py): wall-clock start/end of
# every task, and its result, written as JSON to $BENCH_TIMING_OUT when the playbook ends.

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_timing
type: aggregate
short_description: Task start/end timestamps and results for bench/run_ddl_bench.py
description:
  - Records time.time() when each task starts and when its result arrives, with the result
    (without its invocation), and writes them as JSON to the file named by E(BENCH_TIMING_OUT).
author: dbops.maintenance benchmark
"""


def _result_dict(result):
    res = getattr(result, "result", None)
    if res is None:
        res = result._result  # pylint: disable=protected-access
    return {k: v for k, v in dict(res).items() if not k.startswith("_ansible") and k != "invocation"}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.tasks.append({"name": task.get_name(), "action": task.action, "start": time.time(),
                           "end": None, "status": None, "result": None})

    def _record(self, result, status):
        if not self.tasks:
            return
        t = self.tasks[-1]
        t["end"] = time.time()
        t["status"] = status
        t["result"] = _result_dict(result)

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        out = os.environ.get("BENCH_TIMING_OUT")
        if not out:
            return
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"tasks": self.tasks}, f, default=str)
