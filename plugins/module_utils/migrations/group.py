# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Consecutive pending migrations committed together (migration_apply on SQLite).

On SQLite the cost of a small migration is its commit: two or three fsyncs, the same for any client at the
same durability (bench/migration_apply_bench.py: a bare sqlite3 loop with one commit per migration takes
dbmate's own time). Consecutive pending migrations that each run in a transaction together with their
history row, with nothing written before or after that transaction (dbmate, goose and Flyway on SQLite),
therefore run in ONE transaction, each in its own savepoint, and commit together: once the group has run
for seconds() (GROUP_SECONDS, or lock_timeout / 2 when shorter), when the pending migrations end, or before
a migration that cannot be grouped.

What the tool and every other connection see is what one commit per migration gives: each migration is in
the database together with its history row, or neither is. A crash before the commit loses the group's
migrations and their rows together (the next run applies them again). Only the moment they become visible
changes, by at most the group's time. SQLite has one write lock for the whole file either way: the group
takes it with BEGIN IMMEDIATE without waiting (busy timeout 0; when another writer holds it, the migration
runs alone, where the busy timeout and the lock retries apply), and an application writer waits behind the
group at most seconds() beyond the slowest migration in it.

A migration is grouped when every statement of it starts with a word of the engine's GROUP_WORDS
(engines/scripts.py): transaction control, PRAGMA, VACUUM, ATTACH/DETACH behave differently inside an
enclosing transaction, so a migration holding one runs alone, as before.

When a grouped migration fails or hits a lock timeout, it is rolled back to its savepoint, the migrations
before it are committed (as the tool would have committed them), and it runs again alone, the usual way
(apply.run_unit: the lock retries, the failure recorded as the tool records it). When the COMMIT fails (a
reader holding the file past the busy timeout, a deferred foreign key), the whole group is rolled back and
its migrations run one by one.

PostgreSQL is not grouped: with 1,000 CREATE TABLE migrations, a psycopg loop with one commit per migration
and one with groups of 50 in savepoints took the same time (1.88 s / 1.86 s on the bench machine; the
server's work per CREATE TABLE dominates, not the WAL flush), and a group would hold each migration's locks
until the group commits. MySQL/MariaDB commit DDL at once, so nothing is grouped there.
"""

from __future__ import annotations

import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines import scripts
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import LockTimeout

SAVEPOINT_NAME = '"dbops_migration"'
SAVEPOINT = 'SAVEPOINT %s' % SAVEPOINT_NAME
RELEASE = 'RELEASE %s' % SAVEPOINT_NAME
GROUP_SECONDS = 0.2


def _render(h, ops):
    return [op.render(h.sql) for op in ops]


def groupable(db, unit):
    """Whether the unit can run in a savepoint of a group (see above). Cached on the unit."""
    got = getattr(unit, 'groupable', None)
    if got is None:
        eng = scripts.engine_of(db)
        got = bool(hasattr(eng, 'groupable') and unit.transaction and not unit.before and not unit.after(0)
                   and unit.pieces and all(eng.groupable(p) for p in unit.pieces))
        unit.groupable = got
    return got


def seconds(params):
    """How long a group may run before it commits: GROUP_SECONDS, or half of lock_timeout when shorter."""
    lt = params.get('lock_timeout')
    return min(GROUP_SECONDS, lt / 2.0) if lt else GROUP_SECONDS


def begin_statements(db):
    """The statements that open a group (check mode shows them)."""
    return scripts.begin_group_statements(db.conn)


def run(db, h, units, window):
    """Run the leading groupable units in one transaction.

    Returns (done, alone): done, [(unit, seconds)] committed; alone, how many of the units after them must run
    one by one, the usual way (0: go on grouping)."""
    eng = scripts.engine_of(db)
    try:
        log = eng.begin_group()
    except (LockTimeout, scripts.Failed):
        return [], 1
    t_start = time.monotonic()
    done, alone, ran = [], 0, []
    for u in units:
        if not groupable(db, u) or (done and time.monotonic() - t_start >= window):
            break
        t0 = time.monotonic()
        body = _render(h, u.first) + u.pieces
        try:
            if u.inside_timed:
                eng.run_in_savepoint([SAVEPOINT] + body)
                inside = _render(h, u.inside(int((time.monotonic() - t0) * 1000)))
                eng.run_in_savepoint(inside + [RELEASE])
            else:
                inside = _render(h, u.inside(0))
                eng.run_in_savepoint([SAVEPOINT] + body + inside + [RELEASE])
        except (LockTimeout, scripts.Failed):
            if eng.in_transaction():
                try:
                    eng.rollback_to_savepoint(SAVEPOINT_NAME)
                    eng.run(RELEASE)
                except Exception:  # pylint: disable=broad-except
                    eng.rollback()
            if not eng.in_transaction():  # the whole transaction is gone (SQLite: a full disk, an I/O error)
                return [], len(done) + 1
            alone = 1
            break
        done.append((u, time.monotonic() - t0))
        ran.extend([SAVEPOINT] + body + inside + [RELEASE])
    if not done:
        eng.rollback()
        return [], alone or 1
    try:
        eng.run('COMMIT')
    except (LockTimeout, scripts.Failed):
        eng.rollback()
        return [], len(done)
    db.queries.extend(log + ran + ['COMMIT'])
    return done, alone
