# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every engine adapter shares: statement log, check mode, lock-timeout retries.

An engine adapter (postgresql.py, mysql.py, sqlite.py beside this file) owns
everything that differs between engines: connecting, quoting, introspection,
the DDL it writes, how a lock timeout shows up and who holds a lock. The
modules ask it for a plan (a list of Step) and hand the plan back to
apply(); they never write engine-specific SQL themselves.
"""

from __future__ import annotations

import difflib
import random
import time


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
    # Pause before retry N (1-based) after a lock timeout: 0.5, 1, 2, 4, 8, 8, ...
    retry_base_delay = 0.5
    retry_max_delay = 8.0

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.queries = []      # statements that ran (or, in check mode, would run)
        self.attempts = []     # lock-timeout retries, for the result
        self.alternatives = []  # check mode: statements that run instead if the server refuses one
        self.conn = None
        self._secrets = [v for v in (self.params.get('login_password'),) if v]

    # --- lifecycle -------------------------------------------------------
    def connect(self):
        raise NotImplementedError

    def close(self):
        self.release_maintenance_lock()
        if self.conn is not None:
            try:
                self.conn.close()
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

    def lock_blockers(self):
        """Who blocked the last statement that timed out (list of dicts), if the engine can tell."""
        return []

    def describe_blockers(self, blockers):
        return '; '.join(
            'pid %s (user %s, %s): %s' % (b.get('pid'), b.get('user'), b.get('state'), b.get('query'))
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
            self.run_with_lock_retries(step.sql)
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

    def run_with_lock_retries(self, sql):
        retries = self.params.get('lock_retries') or 0
        timeout = self.params.get('lock_timeout')
        for attempt in range(retries + 1):
            try:
                self.execute(sql)
                self.queries.append(sql)
                return
            except LockTimeout as e:
                blockers = self.lock_blockers()
                self.attempts.append(dict(statement=sql, attempt=attempt + 1, error=self.redact(e),
                                          blockers=blockers))
                if attempt == retries:
                    who = self.describe_blockers(blockers)
                    raise DbopsError(
                        'Could not get the lock for this statement within lock_timeout=%ss, tried %d time(s): %s. '
                        'Nothing was changed.%s Run again when the blocking session has finished, end it, or '
                        'raise lock_retries/lock_timeout.'
                        % (timeout, retries + 1, sql, (' Blocked by %s.' % who) if who else ''),
                        blockers=blockers, attempts=self.attempts)
                delay = min(self.retry_max_delay, self.retry_base_delay * (2 ** attempt))
                time.sleep(delay * random.uniform(0.8, 1.2))

    # --- helpers for plans -------------------------------------------------------
    def fail(self, msg, **details):
        raise DbopsError(msg, **details)

    # --- migration history (migration_status / migration_resolve) ---
    def mig_apply(self, statements):
        """Run the statements of one history change in ONE transaction (check mode: only record them).

        A lock timeout rolls the whole transaction back and retries it (lock_retries,
        growing pause); the engine hooks are mig_run_transaction(statements).
        """
        if not statements:
            return
        if self.check_mode:
            self.queries.extend(statements)
            return
        retries = self.params.get('lock_retries') or 0
        for attempt in range(retries + 1):
            try:
                self.mig_run_transaction(statements)
                self.queries.extend(statements)
                return
            except LockTimeout as e:
                self.attempts.append(dict(statement='; '.join(statements), attempt=attempt + 1,
                                          error=self.redact(e), blockers=[]))
                if attempt == retries:
                    raise DbopsError(
                        'Could not get the lock on the history table within lock_timeout=%ss, tried %d time(s). '
                        'The transaction was rolled back: nothing was changed. Run again when the migration run or '
                        'session holding the table has finished, or raise lock_retries/lock_timeout.'
                        % (self.params.get('lock_timeout'), retries + 1), attempts=self.attempts)
                delay = min(self.retry_max_delay, self.retry_base_delay * (2 ** attempt))
                time.sleep(delay * random.uniform(0.8, 1.2))

    def mig_run_transaction(self, statements):
        raise NotImplementedError

    def mig_columns(self, table):
        """Column names (lower case, in order) of the history table, or None when it does not exist."""
        raise NotImplementedError

    def mig_select(self, table, columns, order_by=()):
        """All rows of the history table as dicts of the given columns."""
        q = 'SELECT %s FROM %s' % (', '.join(self.mig_ident(c) for c in columns), self.mig_ident(table))
        if order_by:
            q += ' ORDER BY ' + ', '.join(self.mig_ident(c) for c in order_by)
        return [dict(zip(columns, r)) for r in self.mig_fetch(q)]

    def mig_fetch(self, query):
        raise NotImplementedError

    def mig_ident(self, name):
        raise NotImplementedError

    def mig_literal(self, value):
        raise NotImplementedError
