# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""method: online on MySQL/MariaDB: a change that only a table copy can do, run by pt-online-schema-change.

pt-online-schema-change (Percona Toolkit; Debian package percona-toolkit 3.2.1, checked against
the harness's MariaDB 10.11) copies the table in chunks into a new one while triggers carry the
application's writes over, then swaps the two with one RENAME TABLE. The application is blocked
only during the swap, which waits at most lock_timeout (--set-vars lock_wait_timeout) and is
retried (--tries swap_tables:N:1).

* The password goes into a 0600 option file (DSN F=...) that is removed afterwards: never argv.
* Check mode runs --dry-run (pt-osc creates and alters its empty _<table>_new copy, then drops it:
  the original table is not touched).
* --max-load / --critical-load throttle and abort the copy on a loaded server.
* Its whole output is captured (progress lines included), redacted, and returned.
* The run is bounded by a timeout; a missing tool or a refusal (triggers already on the table, no
  primary or unique key, ...) fails with the tool's own reason and the original table unchanged.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.process import run_bounded

TOOL = 'pt-online-schema-change'
OUTPUT_LINES = 60


def spec():
    """The `online` suboptions (column_ensure, enum_add, index_ensure), documented in each module."""
    return dict(
        max_load=dict(type='str', default='Threads_running=25'),
        critical_load=dict(type='str', default='Threads_running=50'),
        chunk_time=dict(type='float', default=0.5),
        swap_tries=dict(type='int', default=10),
        timeout=dict(type='float', default=86400),
    )


def alter_clause(statement, qtable):
    """The clause after ALTER TABLE <table> of a statement this collection wrote, without its ALGORITHM."""
    head = 'ALTER TABLE %s ' % qtable
    if not statement.startswith(head):
        raise DbopsError('Internal: %r does not start with %r.' % (statement, head))
    clause = statement[len(head):]
    for tail in (', ALGORITHM=INSTANT', ', ALGORITHM=INPLACE, LOCK=NONE', ', ALGORITHM=COPY'):
        if clause.endswith(tail):
            return clause[:-len(tail)]
    return clause


def _option_file(params):
    fd, path = tempfile.mkstemp(prefix='dbops-ptosc-', suffix='.cnf')  # mode 0600
    lines = ['[client]']
    for opt, key in (('login_user', 'user'), ('login_password', 'password'), ('login_host', 'host'),
                     ('login_port', 'port'), ('login_unix_socket', 'socket')):
        value = params.get(opt)
        if value is not None:
            text = str(value)
            if '\n' in text or '\r' in text:
                os.close(fd)
                os.unlink(path)
                raise DbopsError('%s contains a line break, which an option file cannot hold.' % opt)
            lines.append('%s=%s' % (key, text.replace('\\', '\\\\')))
    with os.fdopen(fd, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def run(db, table, clause, check_mode, options):
    """Run pt-online-schema-change for `ALTER TABLE table clause`; returns dict(command, output)."""
    tool = shutil.which(TOOL)
    if tool is None:
        raise DbopsError('method: online needs %s (Debian/Ubuntu: apt-get install percona-toolkit), which is not on '
                         'the PATH of the managed host. Nothing was changed.' % TOOL)
    p = db.params
    cnf = _option_file(p)
    try:
        dsn = 'F=%s,D=%s,t=%s' % (cnf, p['database'], table)
        if ',' in p['database'] or ',' in table or '=' in table:
            raise DbopsError('pt-online-schema-change cannot name a database or table containing "," or "=" in its '
                             'DSN; method: online is not possible for %s. Nothing was changed.' % table)
        lock_wait = max(1, int(round(p.get('lock_timeout') or 1)))
        args = [tool, '--dry-run' if check_mode else '--execute', '--alter', clause,
                '--max-load', options['max_load'], '--critical-load', options['critical_load'],
                '--chunk-time', str(options['chunk_time']),
                '--set-vars', 'lock_wait_timeout=%d,innodb_lock_wait_timeout=%d' % (lock_wait, lock_wait),
                '--tries', 'swap_tables:%d:1,create_triggers:%d:1,drop_triggers:%d:1' % (
                    options['swap_tries'], options['swap_tries'], options['swap_tries']),
                '--recursion-method', 'none', '--progress', 'time,5', '--print', dsn]
        shown = [a if a != dsn else 'D=%s,t=%s' % (p['database'], table) for a in args]
        rc, out, _err = run_bounded(args, options['timeout'], merge_stderr=True)
        if rc is None:
            raise DbopsError('%s did not finish within online.timeout=%ss; it was stopped (its triggers and _%s_new '
                             'table may remain: check the table). Output: %s'
                             % (TOOL, options['timeout'], table, db.redact(_tail(out))))
        output = db.redact(out.decode('utf-8', 'replace'))
        if rc != 0:
            raise DbopsError('%s refused or failed (exit %d); the original table is unchanged. Its output:\n%s'
                             % (TOOL, rc, _tail(output)), online_output=output.splitlines()[-OUTPUT_LINES:])
        return dict(command=shown, output=output.splitlines()[-OUTPUT_LINES:])
    finally:
        os.unlink(cnf)


def _tail(text):
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return '\n'.join((text or '').splitlines()[-OUTPUT_LINES:])


def run_plan(db, table, steps, check_mode, options):
    """Run the plan's one ALTER TABLE on `table` (its clause, without ALGORITHM) with pt-online-schema-change;
    the statement is recorded in db.queries; returns run()'s dict."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident  # pylint: disable=import-outside-toplevel
    if len(steps) != 1:
        raise DbopsError('Internal: method online runs one ALTER TABLE, and this plan has %d statements. Nothing was '
                         'changed.' % len(steps))
    qtable = quote_ident(table)
    clause = alter_clause(steps[0].sql, qtable)
    result = run(db, table, clause, check_mode, options)
    db.queries.append('ALTER TABLE %s %s' % (qtable, clause))
    return result
