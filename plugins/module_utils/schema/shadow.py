# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The references of schema_diff that are not a file: another database (reference_*), and the migrations
replayed into a shadow database (Prisma's shadow database, without node).

Shadow: a database named dbops_scratch_diff_<random> on the target's server (or on the shadow_* server), created
with the target's encoding / character set and collation, always dropped (also after a failing replay or an
interrupt: SIGTERM/SIGINT/SIGHUP become an exception, so the finally clause runs); for SQLite a file in a private
0700 temporary directory, removed. The migrations are replayed by migration_apply's own engine
(migrations/apply.apply: the statements each tool sends, with its history rows) with create_table and without the
lint gate; shadow_setup (SQL) runs in the shadow first, for the objects no migration creates. The SQL-file tools
replay natively; the code-migration tools (alembic, Django, knex, Rails) replay through migration_apply's `command`
path: the application's own command, given the shadow's connection in `environment` through {shadow_*} tokens
(a replay whose environment names no token is refused, so the command cannot silently migrate the database its
own configuration names). The target's schema is read again after the command: a command that changed it fails
the run loudly.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from urllib.parse import quote

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.engines import scripts
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.command import connection_values

SHADOW_PREFIX = 'dbops_scratch_diff_'
CODE_TOOLS = ('alembic', 'django', 'knex', 'rails')
CONNECTION_KEYS = ('login_host', 'login_port', 'login_user', 'login_password', 'login_unix_socket', 'ssl_mode',
                   'ca_cert', 'client_cert', 'client_key')


class ParamsModule:  # pylint: disable=too-few-public-methods
    """What an engine adapter needs of a module, with other params: a second connection of the same module."""

    def __init__(self, module, params):
        self._module = module
        self.params = params
        self.check_mode = False
        self._diff = False
        self._name = getattr(module, '_name', 'schema_diff')

    def fail_json(self, **kwargs):
        self._module.fail_json(**kwargs)


def connect(module, params, secrets_=()):
    """A connected adapter for params (another database of the same module)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.connection import adapter_class
    db = adapter_class(params['engine'])(ParamsModule(module, params))
    db._secrets = [s for s in list(secrets_) + [params.get('login_password')] if s]
    db.connect()
    return db


def close(db):
    if db is not None:
        watchdog = getattr(db, 'watchdog', None)
        if watchdog is not None:
            watchdog.close()
        db.close()


def reference_params(module):
    """Connection params of reference_database (reference_* options, the target's where not given)."""
    p = module.params
    out = dict(p)
    out['database'] = p['reference_database']
    for key in CONNECTION_KEYS:
        if p.get('reference_' + key) is not None:
            out[key] = p['reference_' + key]
    return out


def shadow_server_params(module):
    """Connection params of the shadow's server: the target's, with shadow_* where given."""
    p = module.params
    out = dict(p)
    other = False
    for key in CONNECTION_KEYS:
        if p.get('shadow_' + key) is not None:
            out[key] = p['shadow_' + key]
            other = True
    out['database'] = p.get('shadow_maintenance_db') or (
        ('postgres' if p['engine'] == 'postgresql' else None) if other else p['database'])
    # the replay runs statements: bounded waits, no retries needed (nobody else uses the shadow)
    out.update(lock_timeout=p.get('shadow_lock_timeout') or 10, lock_retries=0, lock_wait_total=60,
               statement_timeout=p.get('shadow_statement_timeout'), wait_for_lock=0)
    return out


SHADOW_TOKENS = ('shadow_url', 'shadow_database', 'shadow_host', 'shadow_port', 'shadow_user', 'shadow_password')
DEFAULT_COMMAND_TIMEOUT = 900.0


def refuse_code_tool(params):
    """A code-migration tool replays only through its command, told the shadow's connection explicitly."""
    tool = params['tool']
    if tool not in CODE_TOOLS:
        return
    if not params.get('command'):
        raise DbopsError('%s migrations are code: give command (the application\'s own migrate command, as for '
                         'migration_apply) and environment naming the shadow database with {shadow_url} or '
                         '{shadow_database} etc., or compare with reference: snapshot / reference: database.' % tool)
    env = params.get('environment') or {}
    if not any('{%s}' % t in str(v) for v in env.values() for t in SHADOW_TOKENS):
        raise DbopsError('environment names no shadow token ({%s}): the %s command would take its database from '
                         'its own configuration, which may be production. Point it at the shadow, e.g. '
                         'environment: {DATABASE_URL: "{shadow_url}"}. Nothing was created.'
                         % ('}, {'.join(SHADOW_TOKENS), tool))


def shadow_values(engine, params):
    """The {shadow_*} token values for the command's environment (shadow_url percent-encoded)."""
    return dict(('shadow_' + k, v) for k, v in connection_values(engine, params).items())


def shadow_environment(environment, values):
    """environment with each {shadow_*} token replaced, in one pass (a replaced value is never read again; no
    other brace is read)."""
    pattern = re.compile(r'\{(%s)\}' % '|'.join(SHADOW_TOKENS))
    return dict((str(key), pattern.sub(lambda m: values[m.group(1)], str(value)))
                for key, value in (environment or {}).items())


def replay(module, target, read_snapshot, shadow_setup=None):
    """Replay the migrations into a new shadow database and return (snapshot, shadow info).

    read_snapshot(db) reads the shadow's schema. Whatever happens, the shadow is dropped before this returns or
    raises; a failing replay raises DbopsError naming the migration and the statement."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import apply as apply_mod
    p = module.params
    refuse_code_tool(p)
    code = p['tool'] in CODE_TOOLS
    if not p.get('migrations_path'):
        raise DbopsError('reference: migrations needs migrations_path (the %s migrations directory).' % p['tool'])
    if not os.path.isdir(p['migrations_path']):
        raise DbopsError('migrations_path %s is not a directory (or cannot be read). Nothing was created.'
                         % p['migrations_path'])
    server = shadow_server_params(module)
    info = dict(name=None, created=False, dropped=False, server=None)
    admin = shadow = tmpdir = None
    failure = None
    result = None
    try:
        if p['engine'] == 'sqlite':
            tmpdir = tempfile.mkdtemp(prefix='dbops_scratch_')
            path = os.path.join(tmpdir, 'shadow.sqlite3')
            sqlite3.connect(path).close()
            os.chmod(path, 0o600)
            info.update(name=path, created=True)
            params = dict(server, database=path)
        else:
            admin = connect(module, server, module.secrets())
            info['server'] = admin.endpoint()
            name = SHADOW_PREFIX + secrets.token_hex(6)
            admin.execute(create_statement(target, name))
            info.update(name=name, created=True)
            params = dict(server, database=name)
        params.update(create_table=True, lint=False, to=None, command=None)
        hidden = list(module.secrets())
        if code:
            # The application's command creates its own history table; it is told the shadow through environment.
            values = shadow_values(p['engine'], params)
            params.update(create_table=False, command=p['command'], chdir=p.get('chdir'),
                          command_timeout=p.get('command_timeout') or DEFAULT_COMMAND_TIMEOUT,
                          environment=shadow_environment(p.get('environment'), values))
            if values['shadow_password']:
                # the encoded forms too: the command's output is redacted of them as of the password
                hidden += [values['shadow_url'], quote(values['shadow_password'], safe='')]
        shadow = connect(module, params, sorted(set(hidden), key=len, reverse=True))
        if p['engine'] == 'postgresql' and p.get('schema'):
            shadow.execute('CREATE SCHEMA IF NOT EXISTS %s' % quote_pg(p['schema']))
        if shadow_setup:
            run_setup(shadow, shadow_setup)
        try:
            out = apply_mod.apply(shadow, params, False)
        except apply_mod.ApplyFailed as e:
            fm = e.details.get('failed_migration') or {}
            raise DbopsError('Replaying the %s migrations into the shadow database failed at migration %s, '
                             'statement: %s - %s. (The shadow database is dropped; the target was not touched.)'
                             % (p['tool'], fm.get('file') or fm.get('name'), _short(fm.get('statement')),
                                fm.get('error') or e), failed_migration=fm)
        except DbopsError as e:
            if not code:
                raise
            raise DbopsError('Replaying the %s migrations into the shadow database with %s failed: %s%s (The shadow '
                             'database is dropped.)' % (p['tool'], ' '.join(p['command']), e,
                                                        _output(e.details)), rc=e.details.get('rc'))
        info['applied'] = [a['name'] for a in out.get('applied', [])]
        if code:
            # run.run checks, after the target was read again, that nothing is left pending
            info['command'] = dict(rc=out.get('rc'), duration=out.get('duration'))
            info['pending'] = list(out.get('pending') or [])
        result = read_snapshot(shadow)
    except BaseException as e:  # pylint: disable=broad-except
        failure = e
    finally:
        close(shadow)
        try:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
                info['dropped'] = not os.path.exists(tmpdir)
            elif info['created']:
                admin.execute(drop_statement(admin, info['name']))
                info['dropped'] = True
        except Exception as e:  # pylint: disable=broad-except
            info['drop_error'] = str(e)
        close(admin)
    if failure is not None:
        if not info['dropped'] and info['created']:
            failure = DbopsError('%s. AND the shadow database %s could not be dropped: %s. Drop it by hand.'
                                 % (failure, info['name'], info.get('drop_error')))
        if isinstance(failure, DbopsError):
            failure.details['shadow'] = info
        raise failure
    if not info['dropped']:
        raise DbopsError('The shadow database %s could not be dropped after the replay: %s. Drop it by hand.'
                         % (info['name'], info.get('drop_error')), shadow=info)
    return result, info


def quote_pg(name):
    return '"%s"' % name.replace('"', '""')


def quote_my(name):
    return '`%s`' % name.replace('`', '``')


def create_statement(target, name):
    if target.engine == 'postgresql':
        enc, coll, ctype = target.fetchone(
            'SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database '
            'WHERE datname = current_database()')
        return 'CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s' % (
            quote_pg(name), _pg_literal(enc), _pg_literal(coll), _pg_literal(ctype))
    charset, collation = target.fetchone('SELECT @@character_set_database, @@collation_database')
    return 'CREATE DATABASE %s CHARACTER SET %s COLLATE %s' % (quote_my(name), quote_my(charset), quote_my(collation))


def _pg_literal(text):
    return "'%s'" % str(text).replace("'", "''")


def drop_statement(admin, name):
    if not name.startswith(SHADOW_PREFIX):  # never anything but our own shadow
        raise DbopsError('refusing to drop %s: not a shadow database' % name)
    if admin.engine == 'postgresql':
        force = ' WITH (FORCE)' if admin.server_version >= 130000 else ''
        return 'DROP DATABASE IF EXISTS %s%s' % (quote_pg(name), force)
    return 'DROP DATABASE IF EXISTS %s' % quote_my(name)


def run_setup(shadow, text):
    pieces = scripts.split(text, shadow.engine)
    try:
        scripts.run_script(shadow, pieces, False, label='shadow_setup')
    except scripts.ScriptFailed as e:
        raise DbopsError('shadow_setup failed in the shadow database, statement: %s - %s. (The shadow database '
                         'is dropped; the target was not touched.)' % (_short(e.statement), e.error))


def _output(details):
    """The end of the command's error output, for the message (already redacted by run_command)."""
    err = (details.get('stderr') or details.get('stdout') or '').strip()
    return (' Output: ...%s.' % err[-800:]) if err else ''


def _short(text, n=300):
    text = ' '.join(str(text or '').split())
    return text if len(text) <= n else text[:n - 3] + '...'
