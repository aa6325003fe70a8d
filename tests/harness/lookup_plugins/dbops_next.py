# -*- coding: utf-8 -*-
# Lookup of the test harness (tests/integration/ansible_run.py PlaybookSession): asks the test
# process, over the unix socket named by DBOPS_SESSION_SOCKET, for the path of the next task file
# to include, and blocks until the test sends it (bounded by DBOPS_SESSION_TIMEOUT seconds).

from __future__ import annotations

import os
import socket

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: dbops_next
short_description: the next task file of a dbops test-harness playbook session
description:
  - Connects to the unix socket in C(DBOPS_SESSION_SOCKET), sends C(next) and returns what the test
    process answers (the path of a task file), waiting at most C(DBOPS_SESSION_TIMEOUT) seconds (600).
author: dbops.maintenance test harness
"""


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        path = os.environ.get("DBOPS_SESSION_SOCKET")
        if not path:
            raise AnsibleError("dbops_next: DBOPS_SESSION_SOCKET is not set")
        timeout = float(os.environ.get("DBOPS_SESSION_TIMEOUT", "600"))
        chunks = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(path)
                sock.sendall(b"next\n")
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
            except OSError as e:
                raise AnsibleError("dbops_next: no answer from the test process: %s" % e) from e
        answer = b"".join(chunks).decode("utf-8")
        if not answer:
            raise AnsibleError("dbops_next: the test process closed the session without an answer")
        return [answer]
