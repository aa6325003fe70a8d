# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every wait for a database server is bounded: the connection watchdog.

A server that accepts TCP and then never answers (hung, frozen VM, a proxy or
firewall that dropped the flow) would keep a driver waiting forever: TCP
keepalives do not catch a peer whose kernel still acknowledges, and a query
cancel needs the server to answer too. A wall-clock limit is no answer either:
an ALTER TABLE that copies a big table is silent for as long as it runs.

So each adapter connection has one Watchdog. The driver wrappers arm it around
every wait for the server (``with watchdog.waiting(label):``). When a wait has
lasted ``interval`` seconds (connect_timeout), the watchdog asks the server,
through a fresh connection bounded by connect_timeout, whether it is alive and
still has our session (``probe``). A live server with our session: wait on, and
ask again after the next interval (no limit on a long statement; that is
statement_timeout's job). No answer, or our session gone: the watchdog closes
our socket (``abort``), which wakes the blocked driver, and the wrapper raises
ServerSilent with a message naming the server, the phase and the statement.
"""

from __future__ import annotations

import threading
import time

ALIVE = 'alive'
SILENT = 'silent'
GONE = 'gone'


class ServerSilent(Exception):
    """The server stopped answering and the watchdog closed the connection.

    Deliberately not a DbopsError or a driver error: code that turns those into
    findings (db_verify's checks) must not swallow it; run_module reports it.
    """


def shorten(text, limit=200):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


class Watchdog:
    """One per connection. probe() -> ALIVE / SILENT / GONE (may block; run in its own thread); abort() closes the socket."""

    def __init__(self, server, interval, probe, abort):
        self.server = server          # 'PostgreSQL server 127.0.0.1:5432', for messages
        self.interval = max(0.5, float(interval or 10))
        self.probe = probe
        self.abort = abort
        self.tripped = None           # the message, once the watchdog closed the connection
        self.label = None             # what is being waited for (set by the driver wrapper)
        self._cond = threading.Condition()
        self._armed = None            # token of the current wait
        self._closed = False
        self._idle = False            # the thread sleeps with nothing armed (arming must wake it)
        self._thread = None

    # --- used by the driver wrappers -----------------------------------------------
    def waiting(self, label=None):
        return _Armed(self, label)

    def failure(self):
        """The ServerSilent to raise in place of the driver's error, or None if the watchdog did not trip."""
        return ServerSilent(self.tripped) if self.tripped else None

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- the watchdog thread -------------------------------------------------------
    # Arming and disarming wake the watchdog thread only when it sleeps with nothing armed: a wait that
    # ends before its interval costs two lock operations, no thread switch (migration_apply's statements
    # are thousands of short waits; a wake-up of this thread per wait showed on a loaded machine).
    def _arm(self, label):
        token = object()
        with self._cond:
            self._armed = (token, label if label is not None else self.label, time.monotonic())
            if self._idle:
                self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='dbops-watchdog', daemon=True)
                self._thread.start()
        return token

    def _disarm(self, token):
        with self._cond:
            if self._armed is not None and self._armed[0] is token:
                self._armed = None

    def _due(self, armed, checked):
        """When the armed wait is to be checked: interval after it began, or after its last ALIVE check."""
        token, _label, since = armed
        if checked is not None and checked[0] is token:
            return checked[1]
        return since + self.interval

    def _run(self):
        checked = None  # (token, when to check it again) after an ALIVE verdict
        while True:
            with self._cond:
                while not self._closed and self._armed is None:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if self._closed:
                    return
                while not self._closed and self._armed is not None:
                    armed = self._armed
                    left = self._due(armed, checked) - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed or self._armed is None:
                    continue
                token, label, _since = self._armed
            verdict = self._check()
            if verdict == ALIVE:
                checked = (token, time.monotonic() + self.interval)
                continue  # same wait, next interval
            with self._cond:
                if self._armed is None or self._armed[0] is not token:
                    continue  # it answered meanwhile
                self.tripped = self._message(verdict, label)
            try:
                self.abort()
            except Exception:
                pass
            return

    def _check(self):
        box = []

        def run():
            try:
                box.append(self.probe())
            except Exception:
                box.append(SILENT)

        t = threading.Thread(target=run, name='dbops-watchdog-probe', daemon=True)
        t.start()
        # The probe's connect is bounded by connect_timeout; its one query by the same again.
        t.join(2 * self.interval + 1)
        return box[0] if box else SILENT

    def _message(self, verdict, label):
        what = ('the server no longer has this session' if verdict == GONE else
                'a fresh connection got no answer within connect_timeout=%gs either' % self.interval)
        return ('The %s stopped answering (phase: %s): no reply for %gs, and %s. The connection was closed, '
                'nothing more was sent. Whether a statement that was running completed on the server is unknown: '
                'check the server and the network to it, then the database, before running again.'
                % (self.server, shorten(label or 'waiting for the server'), self.interval, what))


class _Armed:
    def __init__(self, watchdog, label):
        self.watchdog = watchdog
        self.label = label
        self.token = None

    def __enter__(self):
        self.token = self.watchdog._arm(self.label)
        return self

    def __exit__(self, *exc):
        self.watchdog._disarm(self.token)
        return False
