# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What migration_lint reads: SQL strings, files, globs, and migration directories.

A migration directory of a tool (prisma, flyway, ...) is listed by the tool
descriptions of migration_status (plugins/module_utils/migrations): the same
code that decides what is pending decides what is linted, in the same order.
This module only adds what linting needs on top: the SQL of each migration
(the up part), and whether the tool runs it in one transaction.
"""

from __future__ import annotations

import ast as py_ast
import glob
import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

try:  # migration_status' tool descriptions (a static import, so that Ansible ships them with the module)
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import registry as mig_registry
except ImportError:  # pragma: no cover - an installation without them
    mig_registry = None


class Source:
    """One thing to lint.

    name: what findings call it (a path, or <sql>); text: the SQL; line_offset:
    lines of the file before text (findings keep the file's line numbers);
    wrapped: True (the tool runs it in one transaction), 'multi' (run as one
    multi-statement script, so a transaction as soon as it has more than one
    statement) or False; migration: the tool's id of the migration; note: set
    for a migration that is code, not SQL (the rule code-migration reports it).
    """

    def __init__(self, name, text, line_offset=0, wrapped=False, migration=None, note=None, skipped=None):
        self.skipped = skipped  # why the source was not read (too large), for the rule too-large
        self.name = name
        self.text = text
        self.line_offset = line_offset
        self.wrapped = wrapped
        self.migration = migration
        self.note = note

    def __repr__(self):
        return 'Source(%r, +%d)' % (self.name, self.line_offset)


def _natural(text):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r'(\d+)', text)]


def too_large(name, size, limit):
    """The message of a source over max_file_size (None when it is not)."""
    if limit is None or size <= limit:
        return None
    return ('%s is %d bytes, more than max_file_size (%d): it was not read, nothing in it was checked.'
            % (name, size, limit))


def read_text(path, max_file_size=None):
    """The text of a file; a file over max_file_size is not read: returns (None, why)."""
    try:
        why = too_large(path, os.path.getsize(path), max_file_size)
        if why:
            return None, why
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise DbopsError('Cannot read %s: %s' % (path, e.strerror or e))
    return data.decode('utf-8', errors='replace'), None


def sql_files(directory):
    """Every *.sql file under directory, in natural order of the relative path."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        for f in files:
            if f.lower().endswith('.sql'):
                found.append(os.path.join(root, f))
    return sorted(found, key=lambda p: _natural(os.path.relpath(p, directory)))


def expand_paths(paths):
    """Files of the path option: files as given, globs expanded, directories -> their *.sql files."""
    out = []
    for entry in paths:
        entry = os.path.expanduser(entry)
        if glob.has_magic(entry):
            matches = sorted(glob.glob(entry, recursive=True), key=_natural)
            if not matches:
                raise DbopsError('path %s matches no file on the host the module runs on. Check the pattern '
                                 '(globs are expanded on the managed host, relative to its working directory).'
                                 % entry)
            for m in matches:
                out.extend(sql_files(m) if os.path.isdir(m) else [m])
        elif os.path.isdir(entry):
            out.extend(sql_files(entry))
        elif os.path.isfile(entry):
            out.append(entry)
        else:
            raise DbopsError('path %s does not exist on the host the module runs on. Copy the migrations there '
                             'first (e.g. ansible.builtin.copy), or use delegate_to: localhost to lint them on '
                             'the controller.' % entry)
    return out


# --- migration tools -----------------------------------------------------------------------------
# How each tool runs a migration file, for the rules about transactions (CONCURRENTLY, ADD VALUE):
# True: in one transaction unless the file opts out; 'multi': as one multi-statement script (an
# implicit transaction when it holds more than one statement).
TOOL_TRANSACTIONS = {
    'prisma': 'multi',
    'golang-migrate': 'multi',
    'flyway': 'multi',
    'sqlx': True,
    'dbmate': True,
    'goose': True,
    'alembic': True,
    'django': True,
    'knex': True,
    'rails': True,
}

CODE_LANGUAGES = {'.py': 'Python', '.js': 'JavaScript', '.ts': 'TypeScript', '.cjs': 'JavaScript',
                  '.mjs': 'JavaScript', '.rb': 'Ruby', '.go': 'Go'}

HOW_TO_GET_SQL = {
    'alembic': 'alembic upgrade <from>:<to> --sql > pending.sql',
    'django': 'python manage.py sqlmigrate <app> <migration> > pending.sql',
    'knex': 'knex migrate:latest --debug (or knex.schema ... .toString())',
    'rails': 'rails db:migrate with ActiveRecord::Base.logger, or lint db/structure.sql changes',
    'goose': 'write the migration as a .sql file',
}


def scan_tool(tool, path, params):
    """The tool's migrations on disk, in its order: migration_status' own listing (Tool.scan)."""
    if mig_registry is None:
        raise DbopsError('Reading %s migration directories needs the migration tool descriptions of '
                         'migration_status, which this installation of the collection does not have.' % tool)
    if tool not in mig_registry.TOOLS:
        raise DbopsError('Unknown migration tool %s (known: %s).' % (tool, ', '.join(mig_registry.TOOLS)))
    return mig_registry.get_tool(tool).scan(path, params)


def _py_strings(text, name):
    """SQL strings a Python migration runs: op.execute('...') (alembic), migrations.RunSQL('...') (django).

    Returns [(line, sql)], and whether the file disables the transaction (django atomic = False).
    """
    try:
        tree = py_ast.parse(text, filename=name)
    except SyntaxError as e:
        raise DbopsError('Cannot read the Python migration %s: %s' % (name, e))
    found, atomic = [], True
    for node in py_ast.walk(tree):
        if isinstance(node, py_ast.Assign) and any(isinstance(t, py_ast.Name) and t.id == 'atomic'
                                                   for t in node.targets):
            if isinstance(node.value, py_ast.Constant) and node.value.value is False:
                atomic = False
        if not isinstance(node, py_ast.Call):
            continue
        func = node.func
        fname = func.attr if isinstance(func, py_ast.Attribute) else getattr(func, 'id', '')
        if fname not in ('execute', 'RunSQL'):
            continue
        args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg in ('sql', 'sqlstatement')]
        for arg in args:
            items = arg.elts if isinstance(arg, (py_ast.List, py_ast.Tuple)) else [arg]
            for item in items:
                if isinstance(item, py_ast.Call) and getattr(item.func, 'id', '') == 'text' and item.args:
                    item = item.args[0]    # sqlalchemy text('...')
                if isinstance(item, py_ast.Constant) and isinstance(item.value, str):
                    found.append((item.lineno, item.value))
    return found, atomic


def _directive_lines(text):
    """(line number, text) of the lines that are whole '--' comments: where dbmate, goose and sqlx
    put their directives (they read them line by line too)."""
    for n, line in enumerate(text.split('\n')):
        stripped = line.strip()
        if stripped.startswith('--'):
            yield n, stripped[2:].strip()


def up_part(tool, text):
    """(up SQL, lines before it, runs in a transaction) of one migration file.

    migration_status lists the files but does not read their SQL; linting needs the part that runs on
    the way up, and whether the tool wraps it in a transaction. Directives, as the tools document them:
    dbmate '-- migrate:up [transaction:false]' / '-- migrate:down'; goose '-- +goose Up' / '-- +goose Down'
    and '-- +goose NO TRANSACTION'; sqlx '-- no-transaction' on the first line.
    """
    lines = text.split('\n')
    if tool in ('dbmate', 'goose'):
        up_mark, down_mark = ('migrate:up', 'migrate:down') if tool == 'dbmate' else ('+goose up', '+goose down')
        start, end, transaction = None, len(lines), True
        for n, directive in _directive_lines(text):
            low = directive.lower()
            if low.startswith(up_mark) and start is None:
                start = n + 1
                if tool == 'dbmate' and 'transaction:false' in low.replace(' ', ''):
                    transaction = False
            elif low.startswith(down_mark) and start is not None:
                end = n
                break
            elif tool == 'goose' and low == '+goose no transaction':
                transaction = False
        if start is None:
            return '', 0, transaction
        return '\n'.join(lines[start:end]), start, transaction
    if tool == 'sqlx':
        first = lines[0].strip() if lines else ''
        return text, 0, first != '-- no-transaction'
    return text, 0, True


def local_sources(tool, local, directory, max_file_size=None, data=None):
    """Sources of one migration listed by the tool (a migrations.base.Local). data: the file's bytes when the
    caller has read them already (migration_apply lints the bytes it runs)."""
    path = local.path or os.path.join(directory, local.name)
    mid = local.id
    wrapped = TOOL_TRANSACTIONS.get(tool, False)
    if data is None and os.path.isdir(path):
        return []
    ext = os.path.splitext(path)[1].lower()
    if data is None:
        text, why = read_text(path, max_file_size)
    else:
        text, why = data.decode('utf-8', errors='replace'), None
    if why:
        return [Source(path, '', 0, False, mid, skipped=why)]
    if ext == '.sql':
        sql, offset, transaction = up_part(tool, text)
        return [Source(path, sql, offset, wrapped if transaction else False, mid)]
    if ext == '.py':
        strings, atomic = _py_strings(text, path)
        out = [Source(path, sql, line - 1, wrapped and atomic, mid) for line, sql in strings]
        note = dict(language='Python', statements=len(strings), how=HOW_TO_GET_SQL.get(tool, ''))
        out.append(Source(path, '', 0, False, mid, note=note))
        return out
    note = dict(language=CODE_LANGUAGES.get(ext, ext or 'code'), statements=0, how=HOW_TO_GET_SQL.get(tool, ''))
    return [Source(path, '', 0, False, mid, note=note)]


def collect(paths=None, sql=None, tool=None, params=None, pending=None, max_file_size=None):
    """All sources to lint, in order.

    pending: None, or the ids of the migrations not applied yet (only_pending);
    then only those are linted.
    """
    out = []
    if sql is not None:
        why = too_large('<sql>', len(sql.encode('utf-8', errors='replace')), max_file_size)
        out.append(Source('<sql>', '' if why else sql, skipped=why))
    for entry in paths or []:
        expanded = os.path.expanduser(entry)
        if tool and os.path.isdir(expanded):
            for local in scan_tool(tool, expanded, params or {}):
                if pending is not None and local.id not in pending:
                    continue
                out.extend(local_sources(tool, local, expanded, max_file_size))
        else:
            if pending is not None:
                raise DbopsError('only_pending needs path to be a migrations directory of a tool (set tool); '
                                 '%s is not.' % entry)
            for f in expand_paths([entry]):
                text, why = read_text(f, max_file_size)
                out.append(Source(f, text or '', skipped=why))
    return out
