# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one check/apply tail of the online modules (index_ensure, constraint_ensure).

finish(module, db, plan, ...) takes the Plan (engines/base.py) the module's planner returned:
every statement of it (and every fallback) must read as one statement; a refused plan (the
object exists with another definition) fails showing both definitions and the difference, with
nothing run; otherwise the steps run (check mode: are recorded), and the object is read back
from the server after a real change, so the result reports facts, not intentions.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.connection import ModuleFailure, finish_result


def check_steps(steps, engine):
    """Each statement of the plan (and each fallback) reads as exactly one statement."""
    for step in steps:
        while step is not None:
            sqlcheck.single_statement(step.sql, engine)
            step = step.alternative


def finish(module, db, the_plan, key, noun, hint, apply, read, describe=None, result=None):
    """The module's result for `the_plan`: key: the result key of the object (index, constraint);
    noun: its name in messages; hint: how to go on after a refusal; apply(): run the steps;
    read(): the object as the server has it now; result: extra result keys."""
    check_steps(the_plan.steps, db.engine)
    result = dict(result or {}, changed=False, target=the_plan.target)
    if the_plan.differences:
        result['differences'] = the_plan.differences
    if the_plan.refused:
        before, after = the_plan.before, the_plan.after
        lines = ['  %-10s current: %-40s wanted: %s' % (k, before.get(k), after.get(k)) for k in the_plan.differences]
        head = '%s %s exists with another definition; nothing was changed.' % (noun, the_plan.target)
        if describe is not None:
            head += '\n  current: %s\n  wanted:  %s' % (describe(before), describe(after))
        raise ModuleFailure('%s\n%s\n%s' % (head, '\n'.join(lines), hint), **finish_result(db, result))
    extra = apply()
    if extra:
        result.update(extra)
    result['changed'] = bool(the_plan.steps)
    after = the_plan.after
    if the_plan.steps and not module.check_mode:
        after = read()
    result[key] = after
    return finish_result(db, result, diff=dict(
        before=the_plan.before or {}, after=after or {},
        before_header='%s (before)' % the_plan.target, after_header='%s (after)' % the_plan.target))
