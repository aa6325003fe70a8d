# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alembic: alembic_version holds one row per current head (version_num).

The revision graph comes from the scripts in migrations_path (the versions/
directory): each file's module-level revision and down_revision (a string, a
tuple for a merge, or None), read with the ast module, never imported.
Applied = the rows and all their ancestors; a row that names no script is the
"Can't locate revision identified by ..." case (unknown). Stamping a revision
replaces the row on its branch line (an ancestor or descendant of it), or adds
a row for a new branch; with purge, the table is emptied first, as
alembic stamp --purge does.
"""

from __future__ import annotations

import ast
import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, similar
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Delete, Insert, Local, Tool, Update, list_dir,
)


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def read_script(path):
    """(revision, down_revisions tuple) of an alembic revision script, or None if it is not one."""
    with open(path, 'rb') as f:
        tree = ast.parse(f.read(), filename=path)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            targets = [node.target.id]
            value = node.value
        else:
            continue
        for t in targets:
            if t in ('revision', 'down_revision'):
                found[t] = _literal(value)
    if not isinstance(found.get('revision'), str):
        return None
    down = found.get('down_revision')
    if down is None:
        downs = ()
    elif isinstance(down, str):
        downs = (down,)
    else:
        downs = tuple(down)
    return found['revision'], downs


class Alembic(Tool):
    name = 'alembic'
    table = 'alembic_version'
    columns = ('version_num',)
    order_by = ('version_num',)
    needs_files = True
    single_row = True
    what = 'revision scripts (versions/*.py)'
    ddl = {
        'postgresql': ['CREATE TABLE {table} (\n\tversion_num VARCHAR(32) NOT NULL, \n'
                       '\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)'],
        'mysql': ['CREATE TABLE {table} (\n\tversion_num VARCHAR(32) NOT NULL, \n'
                  '\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)'],
        'sqlite': ['CREATE TABLE {table} (\n\tversion_num VARCHAR(32) NOT NULL, \n'
                   '\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        out = []
        for name in entries:
            full = os.path.join(path, name)
            if not name.endswith('.py') or name.startswith('__') or not os.path.isfile(full):
                continue
            try:
                got = read_script(full)
            except SyntaxError as e:
                raise DbopsError('Cannot read the alembic revision script %s: %s' % (full, e))
            if got:
                local = Local(got[0], name, full)
                local.downs = got[1]
                out.append(local)
        return order_topologically(out)

    def row_id(self, row):
        return row['version_num']

    def status(self, local, rows, params):
        heads = [r['version_num'] for r in rows]
        out = dict(current=heads, failed=[], modified=[], pending=[], unknown=[], applied=[])
        if local is None:
            out['applied'] = heads
            return out
        by_id = {m.id: m for m in local}
        out['unknown'] = [h for h in heads if h not in by_id]
        applied = ancestors(by_id, [h for h in heads if h in by_id])
        out['applied'] = [m.id for m in local if m.id in applied]
        out['pending'] = [m.id for m in local if m.id not in applied]
        return out

    def plan(self, ctx):
        if ctx.local is None:
            raise DbopsError('migrations_path is required for alembic: the revision graph (revision/down_revision of '
                             'the scripts) decides which row a stamp replaces. Nothing was changed.')
        by_id = {m.id: m for m in ctx.local}
        heads = [r['version_num'] for r in ctx.rows]
        rev = ctx.migration
        purge = ctx.params.get('purge')
        if ctx.state == 'absent':
            # Remove exactly this row (e.g. a revision that no longer exists): no graph needed.
            return [Delete({'version_num': rev})] if rev in heads else []
        if rev not in by_id:
            hint = similar(rev, list(by_id))
            raise DbopsError(
                "Can't locate revision identified by '%s' in the scripts of migrations_path (%d revisions there)%s. "
                'Nothing was changed. Give a revision id from the scripts (alembic history lists them).'
                % (rev, len(by_id), (': similar: %s' % ', '.join(hint)) if hint else ''))
        unknown = [h for h in heads if h not in by_id]
        if unknown and not purge:
            raise DbopsError(
                "alembic_version holds revision(s) %s that no script defines (alembic: Can't locate revision "
                "identified by '%s'). Alembic cannot stamp over them: set purge: true to replace the whole table "
                "with %s (alembic stamp --purge), or remove them with state=absent. Nothing was changed."
                % (', '.join(unknown), unknown[0], rev))
        if purge and unknown:
            if ctx.state == 'applied':
                return [Delete()] + [Insert({'version_num': rev})]
        known_heads = [h for h in heads if h in by_id]
        applied = ancestors(by_id, known_heads)
        if ctx.state == 'applied':
            if rev in applied:
                return []
            mine = ancestors(by_id, [rev])
            # rows on the same branch line: ancestors of rev (rev descends from them)
            below = [h for h in known_heads if h in mine]
            if not below:
                return [Insert({'version_num': rev})]
            ops = [Update({'version_num': rev}, {'version_num': below[0]})]
            ops += [Delete({'version_num': h}) for h in below[1:]]
            return ops
        # rolled_back: move the head rev to its down revision(s)
        if rev not in applied:
            return []
        if rev not in known_heads:
            later = [h for h in known_heads if rev in ancestors(by_id, [h])]
            raise DbopsError(
                'Revision %s is applied but is not a head: %s descend(s) from it. Rolling it back would also roll '
                'those back. Nothing was changed. Roll back the head(s) first, or mark the wanted revision applied.'
                % (rev, ', '.join(later)))
        downs = list(by_id[rev].downs)
        others = [h for h in known_heads if h != rev]
        still = ancestors(by_id, others)
        new = [d for d in downs if d not in still]
        if not new:
            return [Delete({'version_num': rev})]
        ops = [Update({'version_num': new[0]}, {'version_num': rev})]
        ops += [Insert({'version_num': d}) for d in new[1:]]
        return ops


def ancestors(by_id, heads):
    """The set of revisions reachable from heads through down_revision (heads included)."""
    seen = set()
    stack = list(heads)
    while stack:
        r = stack.pop()
        if r in seen or r not in by_id:
            continue
        seen.add(r)
        stack.extend(by_id[r].downs)
    return seen


def order_topologically(local):
    """Base first; among revisions of the same depth, by file name (stable, linear time)."""
    by_id = {m.id: m for m in local}
    children = {}
    indegree = {m.id: 0 for m in local}
    for m in local:
        for d in m.downs:
            if d in by_id:
                children.setdefault(d, []).append(m.id)
                indegree[m.id] += 1
    ready = [m.id for m in local if indegree[m.id] == 0]
    out = []
    i = 0
    while i < len(ready):
        r = ready[i]
        i += 1
        out.append(by_id[r])
        for c in children.get(r, ()):
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if len(out) < len(local):  # a cycle: keep the rest in file order
        done = {m.id for m in out}
        out += [m for m in local if m.id not in done]
    return out


TOOL = Alembic()
