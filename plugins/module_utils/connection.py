# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one connection layer of the collection.

Every module builds its argument spec from connection_argument_spec() (and
safety_argument_spec() when it changes a database), then opens the database
with ``with open_database(module) as db:``. ``db`` is the engine adapter
(plugins/module_utils/engines/<engine>.py): it holds all engine-specific SQL.
The documentation of these options is plugins/doc_fragments/connection.py.
"""

from __future__ import annotations

import contextlib
import traceback

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError


def connection_argument_spec():
    return dict(
        engine=dict(type='str', required=True, choices=['postgresql', 'mysql', 'sqlite']),
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', aliases=['port']),
        login_user=dict(type='str', aliases=['login', 'user']),
        login_password=dict(type='str', no_log=True, aliases=['password']),
        login_unix_socket=dict(type='path', aliases=['unix_socket']),
        config_file=dict(type='path', default='~/.my.cnf'),
        database=dict(type='str', required=True, aliases=['db', 'login_db', 'name_of_database']),
        connect_timeout=dict(type='int', default=10),
        ssl_mode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        client_cert=dict(type='path', aliases=['ssl_cert']),
        client_key=dict(type='path', aliases=['ssl_key'], no_log=False),
    )


def safety_argument_spec():
    return dict(
        lock_timeout=dict(type='float', default=0.5),
        lock_retries=dict(type='int', default=5),
        lock_wait_total=dict(type='float', default=600),
        statement_timeout=dict(type='float'),
        wait_for_lock=dict(type='float', default=0),
    )


def dbops_argument_spec(changes=True, **module_options):
    """The full argument spec of a module: connection (+ safety) + its own options."""
    spec = connection_argument_spec()
    if changes:
        spec.update(safety_argument_spec())
    spec.update(module_options)
    return spec


def adapter_class(engine):
    if engine == 'postgresql':
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql import PostgresAdapter
        return PostgresAdapter
    if engine == 'mysql':
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql import MysqlAdapter
        return MysqlAdapter
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite import SqliteAdapter
    return SqliteAdapter


def validate_safety(module):
    p = module.params
    problems = []
    if p.get('lock_timeout') is not None and p['lock_timeout'] <= 0:
        problems.append('lock_timeout must be more than 0 seconds (it is %s); a DDL statement must never wait '
                        'in the lock queue without a limit' % p['lock_timeout'])
    if p.get('lock_retries') is not None and p['lock_retries'] < 0:
        problems.append('lock_retries must be 0 or more (it is %s)' % p['lock_retries'])
    if p.get('lock_wait_total') is not None and p['lock_wait_total'] <= 0:
        problems.append('lock_wait_total must be more than 0 seconds (it is %s)' % p['lock_wait_total'])
    if p.get('wait_for_lock') is not None and p['wait_for_lock'] < 0:
        problems.append('wait_for_lock must be 0 or more seconds (it is %s)' % p['wait_for_lock'])
    if p.get('statement_timeout') is not None and p['statement_timeout'] < 0:
        problems.append('statement_timeout must be 0 or more seconds (it is %s)' % p['statement_timeout'])
    if p.get('connect_timeout') is not None and p['connect_timeout'] <= 0:
        problems.append('connect_timeout must be more than 0 seconds (it is %s)' % p['connect_timeout'])
    if problems:
        module.fail_json(msg='; '.join(problems))


@contextlib.contextmanager
def open_database(module, maintenance_lock=None):
    """Connect to the database of the module's parameters and yield its adapter.

    maintenance_lock: take the collection's maintenance lock for the whole block
    (default: when the module supports changes, i.e. has lock options, and is
    not in check mode). Any DbopsError raised in the block becomes fail_json
    with the statements run so far, so a failed task still says what it did.
    """
    validate_safety(module)
    cls = adapter_class(module.params['engine'])
    db = None
    try:
        db = cls(module)
        db.connect()
        if maintenance_lock is None:
            maintenance_lock = 'wait_for_lock' in module.params and not module.check_mode
        if maintenance_lock:
            db.acquire_maintenance_lock(module.params.get('wait_for_lock') or 0)
        yield db
    except DbopsError as e:
        extra = dict(e.details)
        if db is not None:
            extra.setdefault('queries', list(db.queries))
        module.fail_json(msg=db.redact(str(e)) if db else str(e), **extra)
    except Exception as e:  # driver errors that no adapter turned into a DbopsError
        message = '%s: %s' % (type(e).__name__, e)
        if db is not None:
            message = db.redact(message)
        module.fail_json(msg='Unexpected error: %s' % message,
                         queries=list(db.queries) if db else [],
                         exception=db.redact(traceback.format_exc()) if db else traceback.format_exc())
    finally:
        if db is not None:
            db.close()
