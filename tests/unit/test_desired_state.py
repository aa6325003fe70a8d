"""state_check's items are the modules' own options: the same spec (defaults included) and the same refusals."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbops.maintenance.plugins.filter.fix_checks import state_plan
from ansible_collections.dbops.maintenance.plugins.module_utils import desired_state
from ansible_collections.dbops.maintenance.plugins.module_utils.connection import dbops_argument_spec
from ansible_collections.dbops.maintenance.plugins.modules import (
    column_ensure, constraint_ensure, enum_add, index_ensure, migration_resolve,
)

COMMON = set(dbops_argument_spec())


class Captured(Exception):
    def __init__(self, spec, kwargs):
        super().__init__('captured')
        self.spec, self.kwargs = spec, kwargs


def _capture_run_module(monkeypatch, module):
    def fake(argument_spec, *_a, **kw):
        raise Captured(argument_spec, kw)
    monkeypatch.setattr(module, 'run_module', fake)
    with pytest.raises(Captured) as e:
        module.main()
    return e.value.spec


def _capture_dbops_module(monkeypatch, module):
    def fake(argument_spec=None, **kw):
        raise Captured(argument_spec, kw)
    monkeypatch.setattr(module, 'DbopsModule', fake)
    with pytest.raises(Captured) as e:
        module.main()
    return e.value.spec


def _own(spec):
    return {k: v for k, v in spec.items() if k not in COMMON}


def test_item_options_are_the_modules_own(monkeypatch):
    assert _own(enum_add.argument_spec()) == desired_state.ENUM_OPTIONS
    assert _own(_capture_dbops_module(monkeypatch, column_ensure)) == desired_state.COLUMN_OPTIONS
    assert _own(_capture_run_module(monkeypatch, index_ensure)) == desired_state.INDEX_OPTIONS
    assert _own(_capture_run_module(monkeypatch, constraint_ensure)) == desired_state.CONSTRAINT_OPTIONS
    own = _own(migration_resolve.argument_spec())
    for k in ('tool', 'migrations_path', 'app', 'history_table'):  # state_check's migrations option
        own.pop(k)
    assert own == desired_state.RESOLUTION_OPTIONS


class Refused(Exception):
    pass


class FakeModule:
    def __init__(self, params):
        self.params = params

    def fail_json(self, msg, **_kw):
        raise Refused(msg)

    def warn(self, _msg):
        pass


ENUM_CASES = [
    ('postgresql', dict(name='t', values=['a'])),
    ('postgresql', dict(name='t', values=['a', 'a'])),
    ('postgresql', dict(values=['a'])),
    ('postgresql', dict(name='t', table='x', values=['a'])),
    ('mysql', dict(table='x', column='c', values=['a'])),
    ('mysql', dict(table='x', values=['a'])),
    ('mysql', dict(table='x', column='c', values=['a'], create=True)),
    ('mysql', dict(table='x', column='c', name='t', values=['a'])),
    ('sqlite', dict(table='x', column='c', values=['a'])),
]


@pytest.mark.parametrize('engine,item', ENUM_CASES)
def test_enum_refusals_are_enum_adds(engine, item):
    p = desired_state.item_params(desired_state.ENUM_OPTIONS, item, dict(engine=engine))
    try:
        enum_add.validate(FakeModule(p))
        module_refuses = False
    except Refused:
        module_refuses = True
    try:
        desired_state._validate_enum(p, engine)  # pylint: disable=protected-access
        ours = False
    except ValueError:
        ours = True
    assert ours == module_refuses, (engine, item)


@pytest.mark.parametrize('item', [
    {'name': 't'},                                                     # values missing
    {'name': 't', 'values': ['a'], 'bogus': 1},                        # unknown option
    'not a dict',
])
def test_bad_items_are_refused_not_crashing(item):
    with pytest.raises(ValueError):
        desired_state.item_params(desired_state.ENUM_OPTIONS, item, dict(engine='postgresql'))


def test_column_item_gets_the_modules_defaults():
    p = desired_state.item_params(desired_state.COLUMN_OPTIONS, {'table': 't', 'column': 'c', 'type': 'text'},
                                  dict(engine='sqlite'))
    assert p['nullable'] is True and p['state'] == 'present' and p['alter'] is False and p['method'] == 'default'
    with pytest.raises(ValueError):
        desired_state._validate_column(dict(p, type=None), 'sqlite')  # pylint: disable=protected-access
    with pytest.raises(ValueError):
        desired_state._validate_column(dict(p, schema='public'), 'sqlite')  # pylint: disable=protected-access


def test_state_plan_records_what_schema_fix_records():
    e = {'name': 'E', 'values': ['X']}
    c = {'table': 't', 'column': 'c', 'type': 'text'}
    state = {'differences': [
        {'kind': 'column', 'option': 'columns', 'index': 0, 'declared': c, 'queries': ['ALTER c'], 'refused': None,
         'module_plan': False},
        {'kind': 'verify', 'item': 'column t.c', 'queries': [], 'refused': None, 'module_plan': False},
        {'kind': 'enum', 'option': 'enums', 'index': 0, 'declared': e, 'queries': ['ALTER e'], 'refused': None,
         'module_plan': False},
    ]}
    assert state_plan(state, 'app') == [{'step': 'schema_fix', 'database': 'app', 'rehearsal': False, 'plan': True,
                                         'check_mode': True, 'items': [e, c], 'queries': ['ALTER e', 'ALTER c']}]
    assert state_plan({'differences': [state['differences'][1]]}, 'app') == []
    state['differences'][0]['module_plan'] = True
    with pytest.raises(AnsibleFilterError):
        state_plan(state, 'app')


def test_tool_names_are_the_registry_s():
    """state_check and db_verify take the tool option's choices from names.NAMES, so they do not import the ten
    tools: the list must be registry.TOOLS's, in its order."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import names, registry
    assert names.NAMES == tuple(registry.TOOLS)


def test_a_postgresql_plan_does_not_import_pymysql():
    """The desired-state code a PostgreSQL state_check imports leaves PyMySQL (and the MySQL adapter) out; the
    constraint planner loads its MySQL half only for a MySQL/MariaDB item."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    code = ('import sys; sys.path.insert(0, %r); ' % str(Path(desired_state.__file__).parents[5])
            + 'from ansible_collections.dbops.maintenance.plugins.module_utils import desired_state; '
            'from ansible_collections.dbops.maintenance.plugins.modules import state_check, db_verify; '
            'print(sorted(m for m in sys.modules if m.startswith("pymysql") or m.endswith("constraint_mysql") '
            'or m.endswith("migrations.registry")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, check=False,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]', out.stdout


@pytest.mark.parametrize('differences, migrations, due', [
    # an item with statements, nothing refused: the playbook's plan is state_check's, and it changes the host
    ([{'option': 'enums', 'queries': ['ALTER e'], 'refused': None, 'module_plan': False}], None, True),
    # only a failed check: the plan changes nothing, no backup (as the full path: __dbops_will_change is false)
    ([{'kind': 'verify', 'queries': [], 'refused': None, 'module_plan': False}], None, False),
    # an item its module must plan (a refusal, pt-osc): the module plans on the full path, and may refuse
    ([{'option': 'enums', 'queries': ['ALTER e'], 'refused': None, 'module_plan': False},
      {'option': 'columns', 'queries': [], 'refused': 'exists', 'module_plan': True}], None, False),
    # a migration history declared: the roles plan it (migration_repair, deploy)
    ([{'option': 'enums', 'queries': ['ALTER e'], 'refused': None, 'module_plan': False}], {'tool': 'dbmate'}, False),
    ([], None, False),
])
def test_backup_due_exactly_when_the_state_plan_changes_something(differences, migrations, due):
    """state_check backs up exactly the hosts the full path would back up on its plan (state_plan non-empty)."""
    assert desired_state.backup_due(differences, {'migrations': migrations}) is due
    if not migrations and not any(d['module_plan'] for d in differences):
        assert bool(state_plan({'differences': differences}, 'app')) is due


def test_backup_option_is_db_backups_spec(monkeypatch):
    """state_check's backup option is validated by db_backup's own options (one spec), bad input named."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup import options as backup_options
    from ansible_collections.dbops.maintenance.plugins.modules import db_backup
    assert _own(_capture_run_module(monkeypatch, db_backup)) == backup_options.options()
    ok = backup_options.validated({'dest': '/b', 'keep_last': 3})
    assert ok['verify'] == 'list' and ok['keep_last'] == 3 and ok['compression'] == 'gzip'
    for bad, words in (({'keep_last': 3}, 'dest'), ({'dest': '/b', 'verify': 'maybe'}, 'verify'),
                       ({'dest': '/b', 'login_password': 'x'}, 'login_password'), ('dest=/b', 'dictionary')):
        with pytest.raises(ValueError, match=words):
            backup_options.validated(bad)


def test_backup_options_lookup_maps_the_roles_variables():
    """The backup role's variables -> db_backup options, as the role's task passed them before the lookup."""
    from ansible_collections.dbops.maintenance.plugins.lookup import backup_options as lookup
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup import options as backup_options
    defaults = lookup.role_defaults()
    assert defaults['dbops_backup_dir'] == '/var/backups/dbops'
    args = lookup.backup_options(lambda _name: None, defaults)
    assert args == {'dest': '/var/backups/dbops', 'dest_mode': '0700', 'preflight': False, 'verify': 'list',
                    'keep_last': 7, 'space_factor': 1.0, 'min_free': 100 * 1048576}
    given = {'dbops_backup_dir': '/b', 'dbops_backup_format': 'directory', 'dbops_backup_jobs': 4,
             'dbops_backup_keep_last': 0, 'dbops_backup_keep_days': 2.5, 'dbops_backup_reuse_within': '15m',
             'dbops_preflight_min_free_mb': '3', 'dbops_preflight_space_factor': 2.0, 'dbops_backup_label': ''}
    args = lookup.backup_options(given.get, defaults)
    assert args['dest'] == '/b' and args['jobs'] == 4 and args['keep_days'] == 2.5 and 'keep_last' not in args
    assert args['min_free'] == 3 * 1048576 and args['space_factor'] == 2.0 and 'label' not in args
    assert set(args) <= set(backup_options.options())
    assert 'jobs' not in lookup.backup_options({'dbops_backup_jobs': 4}.get, defaults)
