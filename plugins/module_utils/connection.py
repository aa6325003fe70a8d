# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one connection layer and the one module boundary of the collection.

Every module builds its argument spec from dbops_argument_spec() (connection
options, + safety options when it changes a database, + its own), and hands
it to run_module() with the function that does the module's work:

    def work(module, db):
        ...
        return finish_result(db, dict(changed=..., ...), diff=...)

    run_module(argument_spec, work, validate=validate)

run_module() owns what every module shares: the AnsibleModule (DbopsModule,
which masks every no_log value even when ansible-core's own collection of
them fails), validation, opening the database (open_database), the
DbopsError -> fail_json mapping with the statements run so far, unexpected
exceptions with a redacted traceback, and exit_json/fail_json. ``db`` is the
engine adapter (plugins/module_utils/engines/<engine>.py): it holds all
engine-specific SQL. The documentation of the options is
plugins/doc_fragments/connection.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Mapping

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_type_dict

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.watchdog import ServerSilent


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


# --- secrets -----------------------------------------------------------------------------

def _leaves(value):
    """Every string a no_log value can show up as in output (as ansible-core's remove_values sees them)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _leaves(v)
    else:
        yield str(value)


def _has_no_log(spec):
    return any(o.get('no_log') or (o.get('options') and _has_no_log(o['options'])) for o in spec.values())


def no_log_values(argument_spec, params):
    """The values of every no_log option in params (top level and suboptions, under any alias).

    Never raises, whatever the types of the values: ansible-core's own
    collection (parameters._list_no_log_values) raises TypeError at the first
    suboption value that is not a dict (a string that is not JSON or key=value,
    a number), and then loses every no_log value of the module, so the
    failure it reports prints them (module_args of the invocation). An
    element of a suboption list that cannot be read is itself treated as
    secret when its suboptions have a no_log one.
    """
    found = set()
    if not isinstance(params, Mapping):
        return found
    for name, opts in argument_spec.items():
        if not isinstance(opts, Mapping):
            continue
        keys = [name] + list(opts.get('aliases') or [])
        values = [params[k] for k in keys if k in params]
        if opts.get('no_log'):
            for v in values:
                found.update(_leaves(v))
        sub = opts.get('options')
        if not sub:
            continue
        secret_inside = _has_no_log(sub)
        for v in values:
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, str):
                    try:
                        item = check_type_dict(item)
                    except Exception:
                        pass
                if isinstance(item, Mapping):
                    found.update(no_log_values(sub, item))
                elif secret_inside:
                    found.update(_leaves(item))
    return found


class DbopsModule(AnsibleModule):
    """AnsibleModule that masks every no_log value in whatever it returns, even when validation failed.

    ansible-core (2.16 to 2.19 at least) collects no_log values in
    ArgumentSpecValidator.validate() via _list_no_log_values(); a suboption
    value that does not parse makes that raise, the error is recorded
    (NoLogError) and the set of no_log values stays empty, so the failure's
    invocation.module_args carries login_password in clear. This class adds
    the values again (no_log_values() above, which cannot fail) before any
    result is written.
    """

    def _mask_secrets(self):
        try:
            self.no_log_values.update(no_log_values(self.argument_spec, self.params))
        except Exception:  # masking must never be the reason a module cannot report
            pass

    def fail_json(self, msg, **kwargs):  # pylint: disable=arguments-differ
        self._mask_secrets()
        return super().fail_json(msg=msg, **kwargs)

    def exit_json(self, **kwargs):
        self._mask_secrets()
        return super().exit_json(**kwargs)

    def secrets(self):
        """Every no_log value, longest first (so a secret that contains another is masked whole)."""
        self._mask_secrets()
        return sorted((v for v in self.no_log_values if v), key=len, reverse=True)

    def redact(self, text):
        text = str(text)
        for s in self.secrets():
            text = text.replace(s, '********')
        return text


# --- the module boundary ----------------------------------------------------------------------

class ModuleFailure(Exception):
    """Raised by a module's work function to fail with a message and result keys (e.g. findings)."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


def finish_result(db, result, diff=None, queries=True):
    """The result keys every module that talks to a database returns.

    queries (the statements run, or in check mode that would run), attempts
    (lock timeouts met, when any), alternatives (check mode, statements a real
    run uses instead, when any), diff (when the task runs with --diff) and
    server (engine, flavour, version). queries=False for read-only modules,
    which document no queries.
    """
    if queries:
        result.setdefault('queries', db.queries)
    if db.attempts:
        result.setdefault('attempts', db.attempts)
    if db.alternatives:
        result.setdefault('alternatives', db.alternatives)
    if diff is not None and db.module._diff:
        result['diff'] = diff
    result.setdefault('server', db.server_info())
    return result


def unexpected(module, error, queries=None, context=''):
    """fail_json for an exception no code turned into a DbopsError: type, message, redacted traceback."""
    module.fail_json(msg=module.redact('Unexpected error%s: %s: %s' % (context and ' ' + context, type(error).__name__, error)),
                     queries=list(queries or []), exception=module.redact(traceback.format_exc()))


def _fail_unreadable_option(argument_spec, error):
    """ansible-core 2.16 raises from its own argument validation (_list_no_log_values: check_type_dict of a
    suboption element that is no dictionary, e.g. queries='a=b c'): no AnsibleModule exists yet, so the failure
    is written as AnsibleModule.fail_json() would write it. Nothing of the task's values is quoted (they may hold
    secrets), only the options that take dictionaries and the parser's own words."""
    names = sorted(name for name, spec in argument_spec.items() if spec.get('options'))
    print(json.dumps(dict(failed=True, msg=(  # pylint: disable=ansible-bad-function
        'An option could not be read: %s. Options that take dictionaries (%s) need each element as a YAML mapping, '
        'or as a "key=value key2=value2" string in which every word is a key=value pair: check those options of the '
        'task for a stray word or space.' % (error, ', '.join(names) or 'none')))))
    sys.exit(1)  # pylint: disable=ansible-bad-function


def run_module(argument_spec, work, validate=None, connect=True, maintenance_lock=None, **module_kwargs):
    """The boundary of every module: spec, validation, database, result, errors.

    argument_spec: dbops_argument_spec(...). work(module, db) does the module's
    job and returns the result dict (db is None with connect=False); it raises
    DbopsError for an operator error (message + details as result keys) and
    ModuleFailure to fail with a full result. validate(module) runs the module's
    own checks of its options before anything connects. module_kwargs go to
    AnsibleModule (mutually_exclusive, required_if, ...).
    """
    module_kwargs.setdefault('supports_check_mode', True)
    try:
        module = DbopsModule(argument_spec=argument_spec, **module_kwargs)
    except (TypeError, ValueError) as e:
        if '_list_no_log_values' not in traceback.format_exc():
            raise
        _fail_unreadable_option(argument_spec, e)
    outcome = None
    try:
        if validate is not None:
            validate(module)
        if connect:
            with open_database(module, maintenance_lock=maintenance_lock) as db:
                try:
                    outcome = work(module, db)
                except ModuleFailure as e:
                    outcome = e
        else:
            try:
                outcome = work(module, None)
            except ModuleFailure as e:
                outcome = e
    except DbopsError as e:  # connect=False; open_database handles its own
        module.fail_json(msg=module.redact(e), **e.details)
    except ServerSilent as e:
        module.fail_json(msg=module.redact(e))
    except Exception as e:  # pylint: disable=broad-except
        unexpected(module, e)
    if isinstance(outcome, ModuleFailure):
        module.fail_json(msg=module.redact(outcome), **outcome.result)
    module.exit_json(**(outcome or {}))


@contextlib.contextmanager
def open_database(module, maintenance_lock=None):
    """Connect to the database of the module's parameters and yield its adapter.

    maintenance_lock: take the collection's maintenance lock for the whole block
    (default: when the module supports changes, i.e. has lock options, and is
    not in check mode). Any DbopsError raised in the block becomes fail_json
    with the statements run so far, so a failed task still says what it did;
    so does a server that stopped answering (ServerSilent). Every no_log value
    of the module is masked in what is returned.
    """
    validate_safety(module)
    cls = adapter_class(module.params['engine'])
    db = None
    secrets = _module_secrets(module)

    def redact(text):
        text = db.redact(text) if db is not None else str(text)
        for s in secrets:
            text = text.replace(s, '********')
        return text

    try:
        db = cls(module)
        db._secrets = list(secrets)  # every no_log value, not only login_password
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
        module.fail_json(msg=redact(e), **extra)
    except ServerSilent as e:
        module.fail_json(msg=redact(e), queries=list(db.queries) if db else [])
    except Exception as e:  # driver errors that no adapter turned into a DbopsError
        module.fail_json(msg='Unexpected error: %s' % redact('%s: %s' % (type(e).__name__, e)),
                         queries=list(db.queries) if db else [],
                         exception=redact(traceback.format_exc()))
    finally:
        if db is not None:
            watchdog = getattr(db, 'watchdog', None)
            if watchdog is not None:
                watchdog.close()
            db.close()


def _module_secrets(module):
    if isinstance(module, DbopsModule):
        return module.secrets()
    values = set(getattr(module, 'no_log_values', ()) or ())
    values.update(no_log_values(getattr(module, 'argument_spec', {}) or {}, module.params))
    return sorted((v for v in values if v), key=len, reverse=True)
