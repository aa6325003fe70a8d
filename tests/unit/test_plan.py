"""engines/base.py: Plan and compare_column, the one compare -> refuse of column_ensure's three engines."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.engines import base
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite import ddl as sqlite_ddl

COL = dict(name='c', type='integer', nullable=True, default=None, comment=None)


def test_same_column_is_a_finished_plan_without_steps():
    differences, plan = base.compare_column('t.c', COL, dict(COL), alter=False)
    assert differences == []
    assert plan.steps == [] and plan.after is COL and plan.before is COL and not plan.refused


@pytest.mark.parametrize('alter', [False, True])
def test_differences_in_key_order_refused_unless_alter(alter):
    want = dict(COL, comment='x', type='bigint', nullable=False)
    differences, plan = base.compare_column('t.c', COL, want, alter=alter)
    assert differences == ['type', 'nullable', 'comment']
    if alter:
        assert plan is None  # the engine plans the change itself
    else:
        assert plan.refused and plan.steps == [] and plan.after is want and plan.differences == differences


def test_keys_and_per_key_comparison():
    cur = dict(COL, type='varchar( 10 )', default=" 'a' ", collation='utf8mb4_bin')
    want = dict(COL, type='VARCHAR(10)', default="'a'", collation='utf8mb4_general_ci')
    same = dict(type=sqlite_ddl._same_type, default=sqlite_ddl._same_default)  # pylint: disable=protected-access
    assert base.compare_column('t', cur, want, False, keys=('type', 'nullable', 'default'), same=same)[0] == []
    assert base.compare_column('t', cur, want, True, keys=base.COLUMN_ATTRIBUTES + ('collation',),
                               same=same)[0] == ['collation']
    # without the engine's comparison the spelling differs
    assert base.compare_column('t', cur, want, True, keys=('type', 'default'))[0] == ['type', 'default']


def test_a_missing_key_is_an_error_not_a_silent_match():
    with pytest.raises(KeyError):
        base.compare_column('t', COL, dict(COL), False, keys=('collation',))


def test_plan_defaults_are_fresh_lists():
    a, b = base.Plan('x'), base.Plan('y')
    a.steps.append(base.Step('S'))
    assert b.steps == [] and a.added == [] and a.differences == [] and not a.created
    assert 'x' in repr(a)


class _Module:  # pylint: disable=too-few-public-methods
    params = dict(login_password=None)
    check_mode = False


def test_an_absent_column_is_dropped_only_with_allow_drop():
    a = base.Adapter(_Module())
    nothing = a.plan_absent_column(dict(allow_drop=False), 't.c', None)
    assert nothing.steps == [] and nothing.before is None and nothing.after is None
    with pytest.raises(base.DbopsError, match='allow_drop: true'):
        a.plan_absent_column(dict(allow_drop=False), 't.c', COL)
    assert a.plan_absent_column(dict(allow_drop=True), 't.c', COL) is None  # the engine plans the drop
