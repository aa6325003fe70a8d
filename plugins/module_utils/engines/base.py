# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every engine adapter shares: statement log, check mode, lock-timeout retries, the blocker watch,
the shared part of the migration history table, and the plans (Plan, Step, compare_column).

An engine adapter (the packages postgresql/, mysql/, sqlite/ beside this file, one mixin per
capability: connection, catalog, ddl, history) owns everything that differs between engines:
connecting, quoting, introspection, the DDL it writes, how a lock timeout shows up and who holds
a lock. The modules ask it for a Plan and hand its steps back to apply(); they never write
engine-specific SQL themselves. A blocker's query is redacted by redact.py.
"""

from __future__ import annotations

import difflib
import operator
import os
import random
import threading
import time

# Set to 1 in the module's environment to re-queue blindly after each pause (the behaviour before
# the blocker watch). Used by bench/run_ddl_bench.py only, to measure the difference; not an option.
BLIND_RETRY_ENV = 'DBOPS_LOCK_RETRY_BLIND'
# Set to 1 to keep the blocker watch from looking during a lock wait, as when the wait ends before its first
# look reaches the server (a short lock_timeout on a loaded machine): the blockers are then found after the
# timeout. Used by tests to exercise that path deterministically; not an option.
NO_WATCH_ENV = 'DBOPS_BLOCKER_WATCH_OFF'


class DbopsError(Exception):
    """An error whose message is meant for the operator: what is wrong and how to fix it.

    details: extra result keys (e.g. blockers) returned with the failure.
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


class LockTimeout(Exception):
    """Raised by an adapter's execute when a statement hit the lock timeout."""


class Unsupported(Exception):
    """Raised by an adapter's execute when the server refuses an ALGORITHM (MySQL)."""


class Step:
    """One statement of a plan.

    sql: the exact text that runs (and that check mode reports).
    why: one line for the operator.
    alternative: a Step to run instead when the server refuses this one as
    unsupported (MySQL ALGORITHM=INSTANT -> INPLACE -> COPY); requires: the
    module option that must be true for the alternative to be used.
    """

    def __init__(self, sql, why='', alternative=None, requires=None, target=None):
        self.sql = sql
        self.why = why
        self.alternative = alternative
        self.requires = requires
        self.target = target

    def __repr__(self):
        return 'Step(%r)' % self.sql


class Plan:
    """What an adapter's plan_* method decided: the steps to hand to apply(), and the object around them.

    target: the object worked on, quoted as the server needs it. before / after: its state now and as it
    will be (None: absent). steps: the Step list (empty: nothing to do). differences: the attributes in
    which an existing column differs from the request (column_ensure). refused: it differs and alter is
    false: the module fails showing both, nothing runs. added / created: enum_add's values to add, and
    whether the enum type is created.
    """

    def __init__(self, target, before=None, after=None, steps=None, differences=None, refused=False, added=None,
                 created=False):
        self.target = target
        self.before = before
        self.after = after
        self.steps = list(steps or [])
        self.differences = list(differences or [])
        self.refused = refused
        self.added = list(added or [])
        self.created = created

    def __repr__(self):
        return 'Plan(%r, steps=%r%s)' % (self.target, self.steps, ', refused' if self.refused else '')


# The attributes of a column that column_ensure manages (MySQL adds collation).
COLUMN_ATTRIBUTES = ('type', 'nullable', 'default', 'comment')


def compare_column(target, current, desired, alter, keys=COLUMN_ATTRIBUTES, same=None):
    """Compare an existing column with the request: returns (differences, plan).

    differences: the attributes of `keys` (in that order) in which `current` and `desired` differ, by
    `same[key](current_value, desired_value)` where given (SQLite compares types normalised), else by ==.
    plan: the finished Plan when nothing differs (no steps, after = current) or when something does and
    alter is false (refused, after = desired); None when the caller has to plan the change of `differences`.
    """
    same = same or {}
    differences = [k for k in keys if not same.get(k, operator.eq)(current[k], desired[k])]
    if not differences:
        return differences, Plan(target, before=current, after=current)
    if not alter:
        return differences, Plan(target, before=current, after=desired, differences=differences, refused=True)
    return differences, None


def similar(name, candidates, n=5):
    """Names the operator may have meant: case-insensitive close matches first."""
    lower = {c.lower(): c for c in candidates}
    found = [lower[name.lower()]] if name.lower() in lower else []
    for m in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6):
        if lower[m] not in found:
            found.append(lower[m])
    return [f for f in found if f != name][:n]


def requested_default(spec):
    """(managed, expression) of column_ensure's default: None = not managed, 'NULL' = no default."""
    expr = spec.get('default')
    if expr is None:
        return False, None
    if expr.strip().upper() == 'NULL':
        return True, None
    return True, expr


def requested_comment(spec):
    """(managed, comment) of column_ensure's comment: None = not managed, '' = no comment."""
    comment = spec.get('comment')
    if comment is None:
        return False, None
    return True, comment or None


def did_you_mean(name, candidates):
    s = similar(name, candidates)
    if not s:
        return ''
    return ' Similar names found: %s.' % ', '.join(s)


class Adapter:
    """Base of the engine adapters. Subclasses set `engine` and implement the hooks."""

    engine = None
    # Pause before retry N (1-based) after a lock timeout when the blockers cannot be watched:
    # 0.5, 1, 2, 4, 8, 8, ...
    retry_base_delay = 0.5
    retry_max_delay = 8.0
    # How often the blockers are polled while the module waits for them to go.
    watch_interval = 0.1

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.queries = []      # statements that ran (or, in check mode, would run)
        self.attempts = []     # lock-timeout retries, for the result
        self.alternatives = []  # check mode: statements that run instead if the server refuses one
        self.blockers_unknown = None  # why the last lock timeout's blockers could not be read
        self.conn = None
        self._secrets = [v for v in (self.params.get('login_password'),) if v]

    # --- lifecycle -------------------------------------------------------
    def connect(self):
        raise NotImplementedError

    def close(self):
        self.release_maintenance_lock()
        # the engine's second connection (the lock-blocker watch, opened at the first lock wait), then the main one
        monitor, self._monitor_conn = getattr(self, '_monitor_conn', None), None
        for conn in (monitor, self.conn):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        self.conn = None

    def redact(self, text):
        """Remove the password from any text that could reach the output."""
        text = str(text)
        for s in self._secrets:
            text = text.replace(s, '********')
        return text

    # --- maintenance lock ----------------------------------------------------
    def acquire_maintenance_lock(self, wait):
        """Take the maintenance lock; wait up to `wait` seconds; DbopsError naming the holder."""
        deadline = time.monotonic() + wait
        while True:
            if self.try_maintenance_lock():
                self._have_lock = True
                return
            if time.monotonic() >= deadline:
                holder = self.maintenance_lock_holder() or 'an unknown session'
                raise DbopsError(
                    'Another maintenance run holds the dbops maintenance lock on database %s: %s. '
                    'Wait for it to finish, or set wait_for_lock (seconds) to queue behind it.'
                    % (self.params['database'], holder), lock_holder=holder)
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())) or 0.05)

    def release_maintenance_lock(self):
        if getattr(self, '_have_lock', False):
            self._have_lock = False
            try:
                self.unlock_maintenance()
            except Exception:
                pass

    def try_maintenance_lock(self):
        raise NotImplementedError

    def maintenance_lock_holder(self):
        raise NotImplementedError

    def unlock_maintenance(self):
        raise NotImplementedError

    # --- statements ------------------------------------------------------------
    def execute(self, statement):
        """Run one changing statement; raise LockTimeout / Unsupported as appropriate."""
        raise NotImplementedError

    def prepare_blocker_watch(self):
        """Open what the blocker watch reads from (the engine's monitoring connection), before any wait."""

    def lock_blockers(self):
        """Who blocked the last statement that timed out (list of dicts), if the engine can tell.

        Each dict: pid, user, state, transaction_start, query (redacted), held_s (how long its
        transaction had been open when last seen) and `identity`: the values that stay the same
        while it is the same blocker (PostgreSQL: pid, backend_start, xact_start).
        """
        return []

    def blockers_still_there(self, blockers):  # pylint: disable=unused-argument
        """Which of `blockers` still block (fresh dicts), or None when the engine cannot tell.

        Called between attempts from the module's second (monitoring) connection; it must
        take no lock on the objects the statement waits for.
        """
        return None

    def describe_blockers(self, blockers):
        return '; '.join(
            'pid %s (user %s, %s%s): %s' % (
                b.get('pid'), b.get('user'), b.get('state'),
                ', held the lock for at least %.1f s' % b['held_s'] if b.get('held_s') is not None else '',
                b.get('query') or '(no query)')
            for b in blockers)

    def apply(self, steps, allow=None):
        """Run the plan's steps in order (or only record them in check mode).

        allow: dict of permission name -> bool, used to decide whether a step's
        alternative may run when the server refuses the step itself.
        """
        allow = allow or {}
        for step in steps:
            self.run_step(step, allow)

    def run_step(self, step, allow):
        if self.check_mode:
            self.queries.append(step.sql)
            alt = step.alternative
            while alt is not None:
                self.alternatives.append(dict(statement=alt.sql, instead_of=step.sql, requires=alt.requires))
                step, alt = alt, alt.alternative
            return
        try:
            self.with_lock_retries(lambda: self.execute(step.sql), step.sql)
            self.queries.append(step.sql)
        except Unsupported as e:
            alt = step.alternative
            if alt is None:
                raise DbopsError('The server refused %s: %s' % (step.sql, e))
            if alt.requires and not allow.get(alt.requires):
                raise DbopsError(
                    'The server cannot do this change in place (%s). It would have to copy or rewrite '
                    'the whole table, which blocks writes for the time the copy takes. Set %s: true to '
                    'allow that, in a maintenance window. Nothing was changed. Statement refused: %s'
                    % (e, alt.requires, step.sql), refused=step.sql)
            self.run_step(alt, allow)

    # --- the one lock-retry loop --------------------------------------------------
    def with_lock_retries(self, run, statement, history=False):
        """Call run() until it does not raise LockTimeout; returns what run() returns.

        After a lock timeout the statement is not queued again while the sessions that blocked it
        are still there: they are watched from the monitoring connection (blockers_still_there)
        and the statement re-queues as soon as they are gone, so the application's queries stall
        behind the waiting statement at most once per lock_timeout per distinct blocker. When the
        blockers cannot be known, it pauses (growing backoff) instead. The wait ends with a
        DbopsError when lock_retries re-queueings are used up or lock_wait_total seconds have
        passed since the first attempt, whichever comes first; the message names every blocker
        seen (query redacted).

        history: the statement is migration_status/migration_resolve's history transaction
        (its message says so).
        """
        if not getattr(self, '_watch_prepared', False):
            # The monitoring connection is opened before the first statement that may wait, not at the first poll
            # of a wait: on a loaded machine connecting took longer than a short lock wait, and the blockers of
            # the first lock timeout went unseen. One connection per run that changes something.
            self._watch_prepared = True
            try:
                self.prepare_blocker_watch()
            except Exception:  # pylint: disable=broad-except
                pass  # the watch connects again at its first poll; the blockers may then stay unknown
        retries = self.params.get('lock_retries') or 0
        total = self.params.get('lock_wait_total')
        t0 = time.monotonic()
        deadline = t0 + total if total else None
        seen = {}
        attempt = 0
        while True:
            attempt += 1
            try:
                return run()
            except LockTimeout as e:
                blockers = self.lock_blockers()
                _note_blockers(seen, blockers)
                record = dict(statement=statement, attempt=attempt, error=self.redact(e),
                              blockers=[_public(b) for b in blockers])
                if not blockers and getattr(self, 'blockers_unknown', None):
                    record['blockers_unknown'] = self.redact(self.blockers_unknown)
                    self.blockers_unknown = None
                self.attempts.append(record)
                if attempt > retries:
                    self._give_up(statement, attempt, t0, seen, 'lock_retries=%d' % retries, history)
                if deadline is not None and time.monotonic() >= deadline:
                    self._give_up(statement, attempt, t0, seen, 'lock_wait_total=%ss' % _num(total), history)
                w0 = time.monotonic()
                how = self._wait_before_retry(blockers, seen, attempt, deadline)
                record['waited_s'] = round(time.monotonic() - w0, 3)
                record['requeued'] = how
                if how == 'lock_wait_total':
                    self._give_up(statement, attempt, t0, seen, 'lock_wait_total=%ss' % _num(total), history)

    def _wait_before_retry(self, blockers, seen, attempt, deadline):
        """Wait until the blockers are gone ('blockers gone'), or a backoff pause when they cannot be
        known ('pause'); 'lock_wait_total' when the deadline came first."""
        still = None
        if blockers and os.environ.get(BLIND_RETRY_ENV) != '1':
            still = self.blockers_still_there(blockers)  # pylint: disable=assignment-from-none
        if still is None:
            delay = min(self.retry_max_delay, self.retry_base_delay * (2 ** (attempt - 1)))
            delay *= random.uniform(0.8, 1.2)
            if deadline is not None and time.monotonic() + delay >= deadline:
                time.sleep(max(0.0, deadline - time.monotonic()))
                return 'lock_wait_total'
            time.sleep(delay)
            return 'pause'
        while still:
            _note_blockers(seen, still)
            if deadline is not None and time.monotonic() >= deadline:
                return 'lock_wait_total'
            time.sleep(self.watch_interval)
            still = self.blockers_still_there(still)  # pylint: disable=assignment-from-none
            if still is None:  # the monitoring connection broke: fall back to one pause
                time.sleep(min(self.retry_max_delay, self.retry_base_delay * (2 ** (attempt - 1))))
                return 'pause'
        return 'blockers gone'

    def _give_up(self, statement, attempts, t0, seen, limit, history):
        blockers = [_public(b) for b in seen.values()]
        who = self.describe_blockers(blockers)
        waited = time.monotonic() - t0
        if history:
            head = ('Could not get the lock on the history table within lock_timeout=%ss, tried %d time(s) '
                    'over %.1f s (%s reached). The transaction was rolled back: nothing was changed.'
                    % (_num(self.params.get('lock_timeout')), attempts, waited, limit))
            tail = (' Run again when the migration run or session holding the table has finished, end it, or '
                    'raise lock_wait_total/lock_retries.')
        else:
            head = ('Could not get the lock for this statement within lock_timeout=%ss, tried %d time(s) over '
                    '%.1f s (%s reached): %s. Nothing was changed.'
                    % (_num(self.params.get('lock_timeout')), attempts, waited, limit, statement))
            tail = (' Run again when the blocking session has finished, end it, or raise '
                    'lock_wait_total/lock_retries.')
        raise DbopsError(head + ((' Blocked by %s.' % who) if who else '') + tail,
                         blockers=blockers, attempts=self.attempts)

    # --- helpers for plans -------------------------------------------------------
    def fail(self, msg, **details):
        raise DbopsError(msg, **details)

    def plan_absent_column(self, spec, target, current):
        """column_ensure state=absent: the finished Plan when the column is not there; DbopsError unless
        allow_drop; None when the engine plans the drop."""
        if current is None:
            return Plan(target, before=None, after=None)
        if not spec.get('allow_drop'):
            self.fail('Column %s exists; dropping it deletes its data for good. Set allow_drop: true to drop it '
                      '(after a backup). Nothing was changed.' % target)
        return None

    # --- migration history (migration_status / migration_resolve) ---
    def history_apply(self, statements):
        """Run the statements of one history change in ONE transaction (check mode: only record them).

        A lock timeout rolls the whole transaction back and retries it (with_lock_retries);
        the engine hook is history_run_transaction(statements).
        """
        if not statements:
            return
        if self.check_mode:
            self.queries.extend(statements)
            return
        self.with_lock_retries(lambda: self.history_run_transaction(statements), '; '.join(statements), history=True)
        self.queries.extend(statements)

    def history_run_transaction(self, statements):
        raise NotImplementedError

    def history_columns(self, table):
        """Column names (lower case, in order) of the history table, or None when it does not exist."""
        raise NotImplementedError

    def history_select(self, table, columns, order_by=()):
        """All rows of the history table as dicts of the given columns."""
        q = 'SELECT %s FROM %s' % (', '.join(self.history_ident(c) for c in columns), self.history_ident(table))
        if order_by:
            q += ' ORDER BY ' + ', '.join(self.history_ident(c) for c in order_by)
        return [dict(zip(columns, r)) for r in self.history_fetch(q)]

    def history_fetch(self, query):
        raise NotImplementedError

    def history_ident(self, name):
        raise NotImplementedError

    # A value of a history-table statement as a literal: one function, the engine's spelling in three hooks.
    bool_literals = ('TRUE', 'FALSE')

    def history_literal(self, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.history_bytes_literal(bytes(value))
        if isinstance(value, bool):
            return self.bool_literals[0] if value else self.bool_literals[1]
        if value is None:
            return 'NULL'
        if isinstance(value, int):
            return str(value)
        return self.history_text_literal(str(value))

    def history_bytes_literal(self, value):
        return "X'%s'" % value.hex().upper()

    def history_text_literal(self, text):
        raise NotImplementedError


class BlockerWatcher:
    """While a statement waits, calls poll() (the engine's "who blocks us now", on the monitoring
    connection) every `interval` seconds and keeps its last non-empty answer. It starts polling only
    if the statement still runs after `delay` seconds, so quick statements cost nothing. poll()
    returning None means the engine cannot tell: the watcher stops.

    The watch runs on a reused daemon thread (_WatchThread) that is not woken by a statement that ends
    before its delay: start() and stop() are a few lock operations, no thread start or switch
    (migration_apply runs thousands of short statements; a thread per statement, and two wake-ups of
    it, were a third of its time on a loaded machine)."""

    def __init__(self, poll, delay, interval=0.05):
        self.poll = poll
        self.delay = delay
        self.interval = interval
        self.blockers = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._state = threading.Lock()
        self._polling = False
        self.due = None

    def start(self):
        self.due = time.monotonic() + self.delay
        if os.environ.get(NO_WATCH_ENV) != '1':
            _WatchThread.submit(self)
        return self

    def stopped(self):
        return self._stop.is_set()

    def stop(self):
        with self._state:
            self._stop.set()
            polling = self._polling
        if polling:
            self._done.wait(timeout=5)
        return self.blockers

    def watch(self):
        """On the watch thread, once `delay` has passed: poll until stopped."""
        with self._state:
            if self._stop.is_set():
                return
            self._polling = True
        try:
            while not self._stop.is_set():
                found = self.poll()
                if found is None:
                    return
                if found:
                    self.blockers = found
                self._stop.wait(self.interval)
        except Exception:  # the monitoring connection failed: the blockers stay unknown
            pass
        finally:
            self._done.set()


class _WatchThread:
    """A daemon thread watching one BlockerWatcher at a time. It sleeps until the watcher's delay has
    passed and is woken only when it had nothing to watch: a watcher stopped before its delay (the
    usual, quick statement) is replaced by the next one without waking the thread, which finds the
    newest watcher when it wakes. A thread busy polling a running watcher is not given another one:
    concurrent watches get threads of their own."""

    _lock = threading.Lock()
    _threads = []

    def __init__(self):
        self.cond = threading.Condition()
        self.current = None
        self.idle = False
        self.polling = False
        threading.Thread(target=self._loop, daemon=True).start()

    def free(self):
        return not self.polling and (self.current is None or self.current.stopped())

    @classmethod
    def submit(cls, watcher):
        with cls._lock:
            worker = next((w for w in cls._threads if w.free()), None)
            if worker is None:
                worker = cls()
                cls._threads.append(worker)
            with worker.cond:
                worker.current = watcher
                if worker.idle:
                    worker.cond.notify()

    def _loop(self):
        while True:
            with self.cond:
                while True:
                    watcher = self.current
                    if watcher is None or watcher.stopped():
                        self.current = None
                        self.idle = True
                        self.cond.wait()
                        self.idle = False
                        continue
                    left = watcher.due - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                self.polling = True
            try:
                watcher.watch()
            finally:
                with _WatchThread._lock:
                    self.polling = False


# --- blockers: bookkeeping and redaction ------------------------------------------------------
def _num(x):
    return ('%g' % x) if isinstance(x, float) else x


def _public(b):
    """A blocker as the result shows it (without the internal identity)."""
    return {k: v for k, v in b.items() if k != 'identity'}


def _note_blockers(seen, blockers):
    """Remember every blocker seen (latest view of each), in order of first sight."""
    for b in blockers:
        key = tuple(b.get('identity') or (b.get('pid'),))
        prev = seen.get(key)
        if prev is not None and prev.get('held_s') is not None and b.get('held_s') is None:
            b = dict(b, held_s=prev['held_s'])
        seen[key] = b
