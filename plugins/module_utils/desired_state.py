# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The desired-state interface of the collection (module state_check).

One connection; each declared item is planned with the very code its module uses (the engines' plan_* methods,
online_ddl's plan functions, the migrations service), in check mode, so nothing is ever changed. An item is in
its desired state only when that plan has no step and would not refuse; anything else (steps, a refusal, an
error, an option the module would reject) sends the host down the full path, where the module itself plans,
refuses or changes. The verify checks are db_verify's (verify.run_checks).

A kind of desired state plugs in with one entry in KINDS: the options of one item (the module's own option
names and defaults, minus connection and safety), a validate(p, engine) that raises ValueError for what the
module's own validation refuses, and an evaluate(db, p) that returns (statements, refused_message or None).
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils import verify
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import constraint as online_constraint
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import index as online_index
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import not_null as online_not_null
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import ptosc as online_ptosc

ACTIONS = ['no action', 'restrict', 'cascade', 'set null', 'set default']

# The options of one item of each kind: those of the module that applies it (tests/unit/test_desired_state.py
# proves they are the module's own, defaults included).
ENUM_OPTIONS = dict(
    name=dict(type='str', aliases=['type']),
    schema=dict(type='str'),
    table=dict(type='str'),
    column=dict(type='str'),
    values=dict(type='list', elements='str', required=True, aliases=['value']),
    before=dict(type='str'),
    after=dict(type='str'),
    create=dict(type='bool', default=False),
    allow_copy=dict(type='bool', default=False),
    method=dict(type='str', default='default', choices=['default', 'online']),
    online=dict(type="dict", default={}, options=online_ptosc.spec()),
)
COLUMN_OPTIONS = dict(
    table=dict(type='str', required=True),
    column=dict(type='str', required=True, aliases=['name']),
    schema=dict(type='str'),
    type=dict(type='str'),
    nullable=dict(type='bool', default=True),
    default=dict(type='str'),
    comment=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    alter=dict(type='bool', default=False),
    using=dict(type='str'),
    allow_rewrite=dict(type='bool', default=False),
    allow_drop=dict(type='bool', default=False),
    method=dict(type='str', default='default', choices=['default', 'online']),
    online=dict(type="dict", default={}, options=online_ptosc.spec()),
)
INDEX_OPTIONS = dict(
    table=dict(type='str', required=True),
    name=dict(type='str', required=True, aliases=['index']),
    schema=dict(type='str'),
    columns=dict(type='list', elements='str', default=[]),
    expressions=dict(type='list', elements='str', default=[]),
    unique=dict(type='bool', default=False),
    where=dict(type='str'),
    method=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    replace=dict(type='bool', default=False),
    concurrently=dict(type='bool', default=True),
    allow_rewrite=dict(type='bool', default=False),
    ddl=dict(type='str', default='default', choices=['default', 'online']),
    online=dict(type="dict", default={}, options=online_ptosc.spec()),
)
CONSTRAINT_OPTIONS = dict(
    table=dict(type='str', required=True),
    name=dict(type='str', required=True, aliases=['constraint']),
    schema=dict(type='str'),
    type=dict(type='str', choices=['foreign_key', 'check', 'unique', 'primary_key']),
    columns=dict(type='list', elements='str', default=[]),
    references=dict(type='dict', options=dict(
        table=dict(type='str', required=True),
        columns=dict(type='list', elements='str', required=True),
        schema=dict(type='str'),
    )),
    on_delete=dict(type='str', choices=ACTIONS, default='no action'),
    on_update=dict(type='str', choices=ACTIONS, default='no action'),
    expression=dict(type='str'),
    validate=dict(type='bool', default=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    replace=dict(type='bool', default=False),
    allow_rewrite=dict(type='bool', default=False),
)
RESOLUTION_OPTIONS = dict(
    migration=dict(type='str', required=True, aliases=['name', 'revision', 'version']),
    state=dict(type='str', choices=['applied', 'rolled_back', 'absent'], default='applied'),
    purge=dict(type='bool', default=False),
    create_table=dict(type='bool', default=False),
)


def _validate_enum(p, engine):
    """enum_add's validate()."""
    values = p['values']
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError('values lists %s more than once' % ', '.join(map(repr, dupes)))
    if p['before'] and p['after']:
        raise ValueError('before and after are mutually exclusive')
    if engine == 'sqlite':
        raise ValueError('SQLite has no enum types')
    if engine == 'postgresql' and (not p['name'] or p['table'] or p['column']):
        raise ValueError('on PostgreSQL give the enum type as name (and no table/column)')
    if engine == 'mysql' and (not (p['table'] and p['column']) or p['create'] or p['name'] or p['schema']):
        raise ValueError('on MySQL/MariaDB give table and column (and no name/schema/create)')


def _validate_column(p, engine):
    """column_ensure's checks before it connects."""
    if p['state'] == 'present' and not p['type']:
        raise ValueError('type is required with state present')
    if p['using'] and engine != 'postgresql':
        raise ValueError('using is PostgreSQL only')
    if p['method'] == 'online' and engine != 'mysql':
        raise ValueError('method online is MySQL/MariaDB only')
    if p['schema'] and engine != 'postgresql':
        raise ValueError('schema is PostgreSQL only')
    if p['type'] is not None:
        sqlcheck.column_type(p['type'], engine, 'type')
    for opt in ('default', 'using'):
        if p[opt] is not None:
            sqlcheck.expression(p[opt], engine, opt)


def _check_steps(steps, engine):
    for step in steps:
        while step is not None:
            sqlcheck.single_statement(step.sql, engine)
            step = step.alternative


def _eval_enum(db, p):
    plan = db.plan_enum_add(values=p['values'], before=p['before'], after=p['after'], create=p['create'],
                            **db.enum_ref(p))
    return [s.sql for s in plan.steps], None


def _eval_column(db, p):
    plan = db.plan_column(p)
    plan.steps += online_not_null.leftover_steps(db, p, plan)
    _check_steps(plan.steps, p['engine'])
    refused = None
    if plan.refused:
        refused = 'column %s exists with another definition (%s)' % (plan.target, ', '.join(plan.differences or []))
    return [s.sql for s in plan.steps], refused


def _eval_index(db, p):
    plan = online_index.plan(db, p)
    online_index.check_steps(plan['steps'], p['engine'])
    refused = None
    if plan.get('refused'):
        refused = 'index %s exists with another definition (%s)' % (plan['target'], ', '.join(plan.get('differences') or []))
    return [s.sql for s in plan['steps']], refused


def _eval_constraint(db, p):
    plan = online_constraint.plan(db, p)
    online_index.check_steps(plan['steps'], p['engine'])
    refused = None
    if plan.get('refused'):
        refused = 'constraint %s exists with another definition (%s)' % (
            plan['target'], ', '.join(plan.get('differences') or []))
    return [s.sql for s in plan['steps']], refused


KINDS = (
    # kind, the state_check option, the module, item options, validate, evaluate, label
    ('enum', 'enums', 'enum_add', ENUM_OPTIONS, _validate_enum, _eval_enum,
     lambda p: p.get('name') or '%s.%s' % (p.get('table'), p.get('column'))),
    ('column', 'columns', 'column_ensure', COLUMN_OPTIONS, _validate_column, _eval_column,
     lambda p: '%s.%s' % (p.get('table'), p.get('column'))),
    ('index', 'indexes', 'index_ensure', INDEX_OPTIONS,
     lambda p, engine: online_index.check_options(p), _eval_index,
     lambda p: '%s.%s' % (p.get('table'), p.get('name'))),
    ('constraint', 'constraints', 'constraint_ensure', CONSTRAINT_OPTIONS,
     lambda p, engine: online_constraint.check_options(p), _eval_constraint,
     lambda p: '%s.%s' % (p.get('table'), p.get('name'))),
)


def item_params(options, item, base):
    """The module's parameters for one item: validated and defaulted by the module's own option spec."""
    if not isinstance(item, dict):
        raise ValueError('expected a dictionary, got %s' % type(item).__name__)
    result = ArgumentSpecValidator(options).validate(dict(item))
    if result.error_messages:
        raise ValueError('; '.join(result.error_messages))
    params = dict(base)
    params.update(result.validated_parameters)
    return params


def _difference(kind, label, why, queries=None, refused=None, **where):
    """One difference. where: option and index of the declaration, declared (the item as given), and
    module_plan (the module's own check-mode run would report other statements: it must plan itself)."""
    out = dict(kind=kind, item=label, why=why, queries=list(queries or []), refused=refused, module_plan=False)
    out.update(where)
    return out


def evaluate_items(db, base, declared):
    """(differences, count of items evaluated) for the declared schema items (enums, columns, ...)."""
    differences, count = [], 0
    for kind, option, module, options, validate, evaluate, label in KINDS:
        for index, item in enumerate(declared.get(option) or []):
            count += 1
            name = '%s[%d]' % (option, index)
            where = dict(option=option, index=index, declared=item)
            module_plan = dict(where, module_plan=True)
            try:
                p = item_params(options, item, base)
                name = label(p)
                validate(p, base['engine'])
                queries, refused = evaluate(db, p)
            except (ValueError, DbopsError, sqlcheck.SqlRefused) as e:
                differences.append(_difference(kind, name, '%s would refuse it: %s' % (module, e), refused=str(e),
                                               **module_plan))
                continue
            if refused:
                differences.append(_difference(kind, name, '%s would refuse it: %s' % (module, refused),
                                               queries, refused, **module_plan))
            elif queries:
                # pt-online-schema-change (column_ensure method online) reports its own statements
                online = kind == 'column' and p.get('method') == 'online'
                differences.append(_difference(kind, name, '%s would run %d statement(s)' % (module, len(queries)),
                                               queries, **(module_plan if online else where)))
    return differences, count


def evaluate_migrations(db, base, spec):
    """(differences, status summary) for the migration history: the declared resolutions (migration_resolve's
    plan), migration_repair's fail_on, and with deploy, nothing pending (migration_deploy has nothing to do)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.service import History, resolve
    differences = []
    tool = spec['tool']
    params = dict(base, tool=tool, migrations_path=spec.get('path'), app=spec.get('app'),
                  history_table=spec.get('history_table'))
    if tool == 'django' and not params['app']:
        return [_difference('migrations', tool, 'app is required for tool=django', refused='app missing')], ''
    for index, item in enumerate(spec.get('resolutions') or []):
        name = 'resolutions[%d]' % index
        try:
            p = item_params(RESOLUTION_OPTIONS, item, params)
            name = '%s -> %s' % (p['migration'], p['state'])
            if p['purge'] and tool != 'alembic':
                raise ValueError('purge is for alembic only')
            statements_before = len(db.queries)
            res = resolve(db, p, True)
            queries = db.queries[statements_before:]
        except (OSError, ValueError, DbopsError) as e:
            differences.append(_difference('resolution', name, 'migration_resolve would refuse it: %s' % e,
                                           refused=str(e)))
            continue
        if res['changed']:
            differences.append(_difference('resolution', name, 'migration_resolve would change the history',
                                           queries))
    try:
        status = History(db, params).status()
    except (OSError, ValueError, DbopsError) as e:
        differences.append(_difference('migrations', tool, 'migration_status would fail: %s' % e, refused=str(e)))
        return differences, ''
    findings = list(spec.get('fail_on') or [])
    if spec.get('deploy'):
        findings += [f for f in ('failed', 'pending') if f not in findings]
    for finding in findings:
        items = status.get(finding) or []
        if items:
            differences.append(_difference('migrations', '%s %s' % (tool, finding), '%d %s migration(s): %s' % (
                len(items), finding, ', '.join(str(i) for i in items[:5]))))
    return differences, status.get('summary', '')


SCHEMA_OPTIONS = ('enums', 'columns', 'indexes', 'constraints')


def backup_due(differences, declared):
    """True when the host's change will be made on this plan, so it needs its backup now: the maintenance
    playbook's full path then takes state_check's plan (no migration history declared, no item its module must
    plan itself) and backs up because a declared item has statements (the state_plan filter's entries)."""
    if declared.get('migrations') or any(d.get('module_plan') for d in differences):
        return False
    return any(d.get('option') in SCHEMA_OPTIONS and d.get('queries') and not d.get('refused') for d in differences)


def _migrations_status(db, spec):
    """The migrations check, importing the ten tools only when it is declared (as db_verify does)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import status as pending  # pylint: disable=import-outside-toplevel
    return pending.verify_checks(db, spec)


def run_verify(db, params):
    """db_verify's checks of the verify option (the same code, the same order)."""
    vparams = dict(db.params)
    vparams.update(tables_min=None, tables=None, columns=None, enum_values=None, migrations=None, queries=None,
                   capture=False, baseline=None, tolerance=0, row_count_tables=None, schema=None)
    vparams.update((k, v) for k, v in (params or {}).items() if v is not None)
    checks, _baseline = verify.run_checks(db, vparams, migrations_status=_migrations_status)
    return checks
