# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The code-migration tools (alembic, django, knex, rails, or any tool given `command`): the application's own
migrate command, run under the maintenance lock with the history read before and after.

The command is told the database the module is connected to through tokens - {database_url}, {database},
{host}, {port}, {user}, {password} - in `environment` values (and the non-secret ones in `command`'s
arguments), so one task definition migrates whichever database the module targets: production, or the
rehearsal's scratch copy. A command that takes its database from its own configuration migrates that one,
whatever the module is connected to: the migration_deploy role refuses to rehearse such a command.
The command runs bounded in time with its whole process group (process.run_bounded).
"""

from __future__ import annotations

import os
import re
import time
from urllib.parse import quote

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.service import plain_rows
from ansible_collections.dbops.maintenance.plugins.module_utils.process import run_bounded

TOKENS = ('database_url', 'database', 'host', 'port', 'user', 'password')
SECRET_TOKENS = ('database_url', 'password')  # never in argv: another user of the host can read it there


def connection_values(engine, params):
    """The connection as the command's tokens give it: url (percent-encoded), database, host, port, user,
    password. SQLite: url sqlite:///<path> (SQLAlchemy's and dj-database-url's form), the rest empty."""
    db = params['database']
    if engine == 'sqlite':
        return dict(url='sqlite:///' + db, database=db, host='', port='', user='', password='')
    socket = None if params.get('login_host') else params.get('login_unix_socket')
    host = params.get('login_host') or '127.0.0.1'
    port = params.get('login_port') or (5432 if engine == 'postgresql' else 3306)
    user = params.get('login_user') or ''
    password = params.get('login_password') or ''
    auth = quote(user, safe='') + ((':' + quote(password, safe='')) if password else '')
    scheme = 'postgresql' if engine == 'postgresql' else 'mysql'
    if socket:  # libpq's ?host=<directory>; PyMySQL / SQLAlchemy's ?unix_socket=<file>
        netloc = (auth + '@' if auth else '') + ('' if engine == 'postgresql' else 'localhost')
        query = ('?host=' if engine == 'postgresql' else '?unix_socket=') + quote(socket, safe='/')
        host = socket if engine == 'postgresql' else 'localhost'
    else:
        netloc = (auth + '@' if auth else '') + ('[%s]' % host if ':' in host else host) + ':%s' % port
        query = ''
    return dict(url='%s://%s/%s%s' % (scheme, netloc, quote(db, safe=''), query), database=db, host=host,
                port=str(port), user=user, password=password)


def token_values(engine, params):
    v = connection_values(engine, params)
    v['database_url'] = v.pop('url')
    return v


def substitute(text, values, tokens=TOKENS):
    """text with each {token} replaced, in one pass: a replaced value is never read again, no other brace is."""
    pattern = re.compile(r'\{(%s)\}' % '|'.join(tokens))
    return pattern.sub(lambda m: values[m.group(1)], str(text))


def command_argv(params, values):
    argv = []
    for arg in params['command']:
        for t in SECRET_TOKENS:
            if '{%s}' % t in arg:
                raise DbopsError('command has {%s} in its arguments, where every user of the host can read it '
                                 '(ps, /proc): give it in environment instead, e.g. environment: {DATABASE_URL: '
                                 '"{database_url}"}. Nothing was run.' % t)
        argv.append(substitute(arg, values))
    return argv


def pgoptions(params, environ):
    """PGOPTIONS with lock_timeout (and statement_timeout) for libpq / node-postgres based tools."""
    parts = []
    if params.get('lock_timeout'):
        parts.append('-c lock_timeout=%dms' % int(round(params['lock_timeout'] * 1000)))
    if params.get('statement_timeout'):
        parts.append('-c statement_timeout=%dms' % int(round(params['statement_timeout'] * 1000)))
    old = environ.get('PGOPTIONS')
    return ' '.join(([old] if old else []) + parts)


def hide(db, values):
    """The connection's secrets in the forms the tokens give them: masked in the output like the password."""
    extra = [values['password'], quote(values['password'], safe=''), values['database_url']] \
        if values['password'] else []
    extra = [s for s in extra if s]
    db._secrets = sorted(set(db._secrets) | set(extra), key=len, reverse=True)
    module = getattr(db, 'module', None)
    if extra and hasattr(module, 'no_log_values'):
        module.no_log_values.update(extra)


def run_command(db, h, st, params, check_mode, result, before_rows):
    result['pending'] = st['pending']
    values = token_values(db.engine, params)
    hide(db, values)
    argv = command_argv(params, values)
    if check_mode:
        result['status'] = st
        result['changed'] = bool(st['pending'])
        result['command'] = argv
        return result
    env = dict(os.environ)
    env.update({str(k): substitute(v, values) for k, v in (params.get('environment') or {}).items()})
    if db.engine == 'postgresql':
        env['PGOPTIONS'] = pgoptions(params, env)
    timeout = params.get('command_timeout')
    t0 = time.monotonic()
    try:
        rc, out, err = run_bounded(argv, timeout, cwd=params.get('chdir') or None, env=env)
    except OSError as e:
        raise DbopsError('Cannot run %s: %s. Nothing was run.' % (argv[0], e))
    took = time.monotonic() - t0
    h.read()
    after = h.status()
    applied_before = set(st['applied'])
    new = [i for i in after['applied'] if i not in applied_before]
    after_rows = plain_rows(h.rows)
    result.update(changed=after_rows != before_rows, status=after, pending=after['pending'],
                  applied=[dict(name=i, duration=None) for i in new], rc=rc, duration=round(took, 3),
                  stdout=db.redact(out.decode('utf-8', 'replace')), stderr=db.redact(err.decode('utf-8', 'replace')),
                  diff=dict(before=before_rows, after=after_rows))
    if rc != 0:
        why = ('did not finish within command_timeout=%ss and was killed with its process group' % timeout) \
            if rc is None else 'exited with %s' % rc
        raise DbopsError('%s %s (not retried). History now: %s' % (' '.join(argv), why, after['summary']),
                         **result)
    if st['pending'] and after_rows == before_rows:
        result.setdefault('warnings', []).append(
            'The command exited 0 but the %s history of %s did not change while %d migration(s) were pending: '
            'does it migrate another database? Tell it this one with a token, e.g. environment: {DATABASE_URL: '
            '"{database_url}"}.' % (h.tool.name, params['database'], len(st['pending'])))
    return result
