# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What migration_apply does: the pending migrations of a tool, run as the tool runs them.

History (service.History) -> refuse a history that is failed / dirty / unknown / modified -> the pending
migrations in the tool's order, up to `to` -> lint gate -> (check mode: the exact statements, nothing run)
-> the tool's own migration lock -> for each migration the tool's Unit (migrations/<tool>.py deploy()):
history rows before, the script (engines/scripts.py), history rows in its transaction and after it, or the
failure recorded as the tool records it. Code-migration tools (alembic, django, knex, rails, or any tool
with `command`) run the application's own command instead, with the status read before and after.
"""

from __future__ import annotations

import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.engines import scripts
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import group
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.command import run_command
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import pin
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.service import History, plain_rows

RESOLVE_HINT = {
    'failed': 'mark it with dbops.maintenance.migration_resolve state=rolled_back (after undoing what it did) or '
              'state=applied (after completing it by hand, e.g. with column_ensure)',
    'unknown': 'deploy the missing migration files, or remove their rows with migration_resolve state=absent',
    'modified': 'restore the files as they were applied, or re-record them (migration_resolve state=absent, then '
                'state=applied) once the schema matches',
}


class ApplyFailed(DbopsError):
    pass


def refuse_unclean(h, st):
    problems = [(k, st.get(k) or []) for k in ('failed', 'unknown', 'modified') if st.get(k)]
    if not problems:
        return
    fix = '; '.join('%s (%s): %s' % (k, ', '.join(str(i) for i in ids[:5]), RESOLVE_HINT[k]) for k, ids in problems)
    raise DbopsError('The %s history is not clean, so no migration was run: %s. Fix it first: %s.'
                     % (h.tool.name, st['summary'], fix), status=st)


def refuse_out_of_order(h, st, params):
    """goose and Flyway refuse pending migrations older than the latest applied one (missing / out of order)
    unless told otherwise; so does migration_apply, unless out_of_order."""
    flag = h.tool.out_of_order_flag
    if not flag or params.get('out_of_order') or not st['applied'] or not st['pending']:
        return
    latest = max((i for i in st['applied']), key=h.tool.sort_key)
    older = [i for i in st['pending'] if h.tool.sort_key(i) < h.tool.sort_key(latest)]
    if older:
        raise DbopsError('%d pending %s migration(s) are older than the latest applied one (%s): %s. %s refuses to '
                         'apply them unless run with %s; set out_of_order: true to apply them as it then does '
                         '(in version order, before the newer ones). Nothing was run.'
                         % (len(older), h.tool.name, latest, ', '.join(older[:5]) + (' ...' if len(older) > 5 else ''),
                            h.tool.name.capitalize() if h.tool.name == 'flyway' else h.tool.name, flag),
                         status=st, pending=st['pending'])


def refuse_changed_meanwhile(h, st):
    """Read the history again once the tool's lock is ours: a deploy that held it (the application migrating
    at start-up) may have applied some of our pending migrations meanwhile, and running them again would fail
    them (Prisma would record P3009's failed row). Nothing runs then; the next run applies what is left."""
    rows_then = plain_rows(h.rows)
    h.read()
    if plain_rows(h.rows) == rows_then:
        return
    now = h.status()
    done = [i for i in st['pending'] if i not in now['pending']]
    raise DbopsError('The %s history changed while this run was getting the tool\'s migration lock (another '
                     'deploy ran%s), so no migration was run: run again to apply what is still pending. History '
                     'now: %s' % (h.tool.name, ' and applied %s' % ', '.join(done[:5]) if done else '',
                                  now['summary']), status=now, pending=now['pending'])


def select_pending(h, st, to):
    """The pending Locals in the tool's order, up to and including `to`."""
    by_id = {m.id: m for m in h.local}
    pending = [by_id[i] for i in st['pending'] if i in by_id]
    if to is None:
        return pending
    m = h.tool.find_local(h.local, str(to))
    if m is None:
        raise DbopsError('to=%s is not a migration in migrations_path (%d there). Nothing was run.'
                         % (to, len(h.local)))
    want = m.id
    if want in st['applied']:
        return []
    ids = [p.id for p in pending]
    if want not in ids:
        raise DbopsError('to=%s is neither applied nor pending (%s). Nothing was run.' % (to, st['summary']))
    return pending[:ids.index(want) + 1]


def lint_pending(db, h, pending, params):
    """migration_lint on the pending migrations (as migration_lint only_pending does). Returns findings, failing."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import runner, sources
    missing = runner.missing_parser(db.engine)
    if missing:
        raise DbopsError('The lint gate needs %s to parse %s SQL (pip install %s), or set lint: false.'
                         % (missing[0], db.engine, missing[0]))
    srcs = []
    for m in pending:
        found = sources.local_sources(h.tool.name, m, params['migrations_path'], data=pin(m))
        if h.tool.name == 'flyway':
            # lint what runs: the text with Flyway's placeholders replaced
            from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.flyway import (
                replace_placeholders)
            for s in found:
                if s.text:
                    s.text = replace_placeholders(s.text, m, db.engine, params)
        srcs.extend(found)
    pg_version = mysql_version = None
    if db.engine == 'postgresql':
        pg_version = db.server_version // 10000
    elif db.engine == 'mysql':
        mysql_version = db.version  # the server's VERSION() answer, with its flavour ('10.11.19-MariaDB-...')
    # as migration_lint lists them by default: every error, warning and ignored finding, at most
    # DEFAULT_MAX_INFO_FINDINGS style hints (the others counted); 1,000 generated migrations give thousands
    out = runner.lint(srcs, db.engine, pg_version=pg_version, mysql_version=mysql_version,
                      max_info=runner.DEFAULT_MAX_INFO_FINDINGS)
    return out, runner.failing(out['findings'], 'error'), runner.summary(out, 'error')


# --- the tool's own migration lock ------------------------------------------------------------

def take_tool_lock(db, lock, wait):
    """Take the tool's lock without queueing on it unbounded: try, and retry until `wait` seconds passed."""
    deadline = time.monotonic() + (wait or 0)
    while True:
        if lock['kind'] == 'pg_advisory':
            got = db.fetchone('SELECT pg_try_advisory_lock(%s)', [lock['key']])[0]
        else:
            got = db.fetchone('SELECT GET_LOCK(%s, 0)', [lock['name']])[0] == 1
        if got:
            return
        if time.monotonic() >= deadline:
            raise DbopsError('The migration tool\'s own lock is held by another session (%s): an application or '
                             'another deploy is migrating this database now. Nothing was run. Wait for it, or set '
                             'wait_for_lock (seconds).' % lock['source'])
        time.sleep(0.2)


def release_tool_lock(db, lock):
    try:
        if lock['kind'] == 'pg_advisory':
            db.fetchone('SELECT pg_advisory_unlock(%s)', [lock['key']])
        else:
            db.fetchone('SELECT RELEASE_LOCK(%s)', [lock['name']])
    except Exception:  # pylint: disable=broad-except
        pass


# --- SQLite: the tool's driver's durability setting ---------------------------------------------

# PRAGMA synchronous of the tool's SQLite driver on its connection. mattn/go-sqlite3 (dbmate's and
# golang-migrate's sqlite3 driver) runs "PRAGMA synchronous = NORMAL" on every connection it opens
# (sqlite3.go, SQLiteDriver.Open: synchronousMode := "NORMAL"), so their deploy syncs three times per
# migration commit in a rollback-journal database where SQLite's default (FULL) syncs four. The other
# tools' drivers keep SQLite's default. A process crash leaves the same state either way (each migration
# commits with its history row or not at all); the difference is only the power-loss margin SQLite
# documents for NORMAL (https://www.sqlite.org/pragma.html#pragma_synchronous).
SQLITE_SYNCHRONOUS = {'dbmate': 1, 'golang-migrate': 1}


def sqlite_synchronous(db, tool):
    """Lower the connection's synchronous level to the tool driver's for the migrations (never raise it).
    Returns the level to restore afterwards, or None."""
    want = SQLITE_SYNCHRONOUS.get(tool)
    if db.engine != 'sqlite' or want is None:
        return None
    now = db.conn.execute('PRAGMA synchronous').fetchone()[0]
    if now <= want:
        return None
    db.conn.execute('PRAGMA synchronous = %d' % want)
    return now


# --- native apply ------------------------------------------------------------------------------

def render(h, ops):
    return [op.render(h.sql) for op in ops]


def predicted_rows(h, units, creating):
    """Check mode's diff: the history rows as the run would leave them (the Ops simulated on the rows read;
    a database default such as a timestamp shows as None, a SQL expression as its text)."""
    rows = list(h.rows)
    ops = list(h.tool.create_ops(h.sql)) if creating else []
    for u in units:
        ops += list(u.before) + list(u.first) + list(u.inside(0)) + list(u.after(0))
    for op in ops:
        rows = op.simulate(rows)
    columns = list(h.rows[0]) if h.rows else list(h.tool.columns)
    return plain_rows([dict(dict.fromkeys(columns), **r) for r in rows])


def plan_statements(h, unit, engine, grouped=False):
    """The statements of one unit, in the order they run (check mode). grouped: the unit runs in a savepoint of
    a group (migrations/group.py), whose BEGIN / COMMIT the caller puts around the group."""
    if grouped:
        return [group.SAVEPOINT] + render(h, unit.first) + unit.pieces + render(h, unit.inside(0)) + [group.RELEASE]
    out = render(h, unit.before)
    if unit.transaction:
        out.append('BEGIN')
    out += render(h, unit.first) + unit.pieces + render(h, unit.inside(0))
    if unit.transaction:
        out.append('COMMIT')
    out += render(h, unit.after(0))
    return out


def run_unit(db, h, unit):
    """Run one unit; returns duration in seconds, raises ApplyFailed with failed_migration."""
    t0 = time.monotonic()
    if unit.before:
        db.history_apply(render(h, unit.before))
    label = '%s (%s)' % (unit.local.name, 'whole migration, in its transaction' if unit.transaction else 'script')
    try:
        scripts.run_script(db, unit.pieces, unit.transaction, before_sql=render(h, unit.first),
                           inside_sql=lambda: render(h, unit.inside(int((time.monotonic() - t0) * 1000))),
                           label=label, inside_fixed=None if unit.inside_timed else render(h, unit.inside(0)))
    except scripts.ScriptFailed as e:
        error = db.redact(e.error)
        recorded = []
        # one script sent as one query on PostgreSQL is one implicit transaction: rolled back, unless it ran
        # (then what failed is the history row after it)
        whole = unit.transaction or (len(unit.pieces) == 1 and db.engine == 'postgresql' and not e.ran)
        if e.lock_timeout and not e.ran:
            # nothing of it stayed (rolled back whole, or its first statement never got its lock) after the
            # lock retries: take back the rows written before it, so the history is as before
            if unit.undo:
                db.history_apply(render(h, unit.undo))
            how = 'not applied: nothing of it ran or stayed after the lock timeouts; its history is as before'
        else:
            ops = unit.failed(error)
            if ops:
                recorded = render(h, ops)
                db.history_apply(recorded)
            how = ('rolled back (it ran in a transaction)' if e.rolled_back or whole
                   else '%d statement(s) of it ran and stay (no transaction)' % len(e.ran))
        raise ApplyFailed(
            'Migration %s failed: %s. It was %s.%s' % (
                unit.local.name, error.rstrip('. '), how,
                ' Recorded as the tool records a failure: %s.' % '; '.join(recorded) if recorded else ''),
            failed_migration=dict(name=unit.local.id, file=unit.local.name, statement=e.statement, error=error,
                                  ran=e.ran, rolled_back=bool(e.rolled_back or whole), lock_timeout=e.lock_timeout))
    ms = int((time.monotonic() - t0) * 1000)
    after = render(h, unit.after(ms))
    if after:
        db.history_apply(after)
    return time.monotonic() - t0


def apply(db, params, check_mode):
    """migration_apply's work. Returns the result keys (without queries/server)."""
    if params.get('schema') and db.engine == 'postgresql':
        if not db.schema_exists(params['schema']):
            raise DbopsError('schema %s does not exist in database %s. Nothing was run.'
                             % (params['schema'], params['database']))
        scripts.set_search_path(db, params['schema'])
    h = History(db, params)
    before_rows = plain_rows(h.rows)
    st = h.status()
    result = dict(changed=False, applied=[], lint=[], lint_unlisted_info=0, status_before=st)
    if params.get('command'):
        return run_command(db, h, st, params, check_mode, result, before_rows)
    if not h.tool.native_apply:
        raise DbopsError('%s migrations are code (not SQL files): give command (the application\'s own migrate '
                         'command, e.g. [alembic, upgrade, head]) to run them under the maintenance lock. '
                         'Nothing was run.' % h.tool.name)
    if h.local is None:
        raise DbopsError('migrations_path is required: the directory of the %s. Nothing was run.' % h.tool.what)
    refuse_unclean(h, st)
    refuse_out_of_order(h, st, params)
    pending = select_pending(h, st, params.get('to'))
    if params.get('to') is None and hasattr(h.tool, 'repeatable_pending'):
        pending += h.tool.repeatable_pending(params['migrations_path'], h.rows)  # Flyway: R__ after the V
    result['pending'] = [m.id for m in pending]
    if pending and params.get('lint', True):
        out, bad, summary = lint_pending(db, h, pending, params)
        result['lint'] = out['findings']
        result['lint_unlisted_info'] = out['unlisted_info']
        if bad:
            raise DbopsError('The lint gate refused the run (%d error finding(s) in the pending migrations; fix '
                             'them, accept one with an inline "-- dbops:ignore <rule> <reason>" comment, or set '
                             'lint: false). Nothing was run.\n%s' % (len(bad), summary),
                             lint=out['findings'], lint_unlisted_info=out['unlisted_info'], pending=result['pending'])
    state = h.tool.deploy_state(h.rows, db.engine, params)
    units = [h.tool.deploy(m, db.engine, state, params) for m in pending]
    create = []
    if units and not h.exists:
        if not params.get('create_table'):
            raise DbopsError('The %s history table %s does not exist in database %s. Set create_table: true to '
                             'create it as %s does on its first deploy (or check tool/history_table/database). '
                             'Nothing was run.' % (h.tool.name, h.sql.table, params['database'], h.tool.name))
        create = render(h, h.tool.create_ops(h.sql))
    if check_mode:
        # the plan only in check mode: a run returns what it ran (applied, queries), and the same statements
        # twice made Ansible's result processing (no_log redaction walks every string) a fifth of a long run
        result['plan'] = []
        db.queries.extend(create)
        open_group = False
        for u in units:
            grouped = group.groupable(db, u)
            statements = plan_statements(h, u, db.engine, grouped)
            result['plan'].append(dict(name=u.local.id, file=u.local.name, transaction=u.transaction,
                                       how=u.note + (' (in a savepoint, committed with its group)' if grouped else ''),
                                       statements=statements))
            if grouped and not open_group:
                db.queries.extend(group.begin_statements(db))
            elif open_group and not grouped:
                db.queries.append('COMMIT')
            open_group = grouped
            db.queries.extend(statements)
        if open_group:
            db.queries.append('COMMIT')
        result['changed'] = bool(units)
        result['status'] = st
        result['diff'] = dict(before=before_rows, after=predicted_rows(h, units, not h.exists))
        return result
    if not units:
        result['status'] = st
        result['pending'] = st['pending']
        result['diff'] = dict(before=before_rows, after=before_rows)
        return result
    lock = h.tool.tool_lock(db.engine, params)
    if lock:
        take_tool_lock(db, lock, params.get('wait_for_lock'))
        refuse_changed_meanwhile(h, st)
    failure = None
    restore_sync = sqlite_synchronous(db, h.tool.name)
    try:
        if create:
            db.history_apply(create)
        window = group.seconds(params)
        i, alone = 0, 0
        while i < len(units):
            if not alone and group.groupable(db, units[i]):
                done, alone = group.run(db, h, units[i:], window)
                for u, took in done:
                    result['applied'].append(dict(name=u.local.id, file=u.local.name, duration=round(took, 3)))
                i += len(done)
                result['changed'] = result['changed'] or bool(done)
                continue
            u = units[i]
            try:
                took = run_unit(db, h, u)
            except ApplyFailed as e:
                failure = e
                break
            result['applied'].append(dict(name=u.local.id, file=u.local.name, duration=round(took, 3)))
            result['changed'] = True
            i += 1
            alone = max(alone - 1, 0)
    finally:
        if restore_sync is not None:
            db.conn.execute('PRAGMA synchronous = %d' % restore_sync)
        if lock:
            release_tool_lock(db, lock)
    try:
        h.read()
        after = h.status()
    except Exception as e:  # pylint: disable=broad-except
        # e.g. another session's lock on the history table outlasting lock_timeout: report what ran
        done = [a['name'] for a in result['applied']]
        why = 'the history could not be read again afterwards: %s' % (
            db.redact(e).splitlines() or [type(e).__name__])[0]
        if failure is None:
            raise DbopsError('Applied %s, but %s.' % (', '.join(done) or 'nothing', why), applied=result['applied'],
                             changed=True)
        failure.details.update(result, changed=True, queries=list(db.queries), status=dict(summary=why),
                               pending=[i for i in st['pending'] if i not in done])
        raise failure
    result.update(status=after, pending=after['pending'], changed=result['changed'] or failure is not None or bool(create),
                  diff=dict(before=before_rows, after=plain_rows(h.rows)))
    if failure is not None:
        failure.details.update(result)
        failure.details['queries'] = list(db.queries)
        if db.attempts:
            failure.details['attempts'] = db.attempts
        raise failure
    return result
