# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL front-end: pglast, i.e. libpg_query, the parser of the PostgreSQL server itself.

A source is parsed whole; if PostgreSQL's parser rejects it, the source is
split at the statement boundaries of PostgreSQL's own scanner (which knows
strings, dollar quotes and comments) and each piece is parsed alone, so a
bad statement becomes one parse-error finding and the others are still
checked. Comments come from the same scanner (SQL_COMMENT / C_COMMENT tokens).
"""

from __future__ import annotations

import bisect

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import (
    Event, Statement, attach_ignores, line_of, line_starts,
)

try:
    from pglast import ast, enums, parser as pg_parser
    from pglast.stream import RawStream
    HAS_PGLAST = True
    PGLAST_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the managed host
    HAS_PGLAST = False
    PGLAST_IMPORT_ERROR = e


def _name(parts):
    """A dotted name from a tuple of String nodes (or a RangeVar)."""
    if parts is None:
        return None
    if hasattr(parts, 'relname'):
        return '.'.join(p for p in (parts.schemaname, parts.relname) if p)
    return '.'.join(getattr(p, 'sval', str(p)) for p in parts)


def _type_text(type_name):
    try:
        return RawStream()(type_name)
    except Exception:  # pragma: no cover - printing never fails for parsed types
        return _name(type_name.names)


def _const_text(node):
    val = getattr(node, 'val', None)
    return getattr(val, 'sval', None)


# ALTER TABLE subcommands that do NOT take an ACCESS EXCLUSIVE lock on the table.
LIGHT_ALTERS = None


def _light_alters():
    global LIGHT_ALTERS  # pylint: disable=global-statement
    if LIGHT_ALTERS is None:
        t = enums.AlterTableType
        LIGHT_ALTERS = {int(t.AT_ValidateConstraint), int(t.AT_SetStatistics), int(t.AT_ClusterOn),
                        int(t.AT_DropCluster), int(t.AT_SetOptions), int(t.AT_ResetOptions),
                        int(t.AT_SetRelOptions), int(t.AT_ResetRelOptions), int(t.AT_DetachPartitionFinalize),
                        int(t.AT_AttachPartition), int(t.AT_ReplicaIdentity), int(t.AT_EnableTrig),
                        int(t.AT_DisableTrig), int(t.AT_EnableTrigAll), int(t.AT_DisableTrigAll),
                        int(t.AT_EnableTrigUser), int(t.AT_DisableTrigUser)}
    return LIGHT_ALTERS


def _column_def_events(table, coldef, events):
    C = enums.ConstrType
    kinds = [int(c.contype) for c in (coldef.constraints or ())]
    type_text = _type_text(coldef.typeName)
    serial = type_text.lower() in ('serial', 'bigserial', 'smallserial', 'serial4', 'serial8', 'serial2')
    has_default = (int(C.CONSTR_DEFAULT) in kinds or int(C.CONSTR_IDENTITY) in kinds or
                   int(C.CONSTR_GENERATED) in kinds or serial or coldef.raw_default is not None)
    not_null = int(C.CONSTR_NOTNULL) in kinds or int(C.CONSTR_PRIMARY) in kinds
    events.append(Event('add_column', table=table, column=coldef.colname, not_null=not_null,
                        has_default=has_default, type=type_text))


def statement_events(node):
    """The Events of one parsed PostgreSQL statement."""
    ev = []
    O = enums.ObjectType
    if isinstance(node, ast.TransactionStmt):
        k = enums.TransactionStmtKind
        kind = int(node.kind)
        if kind in (int(k.TRANS_STMT_BEGIN), int(k.TRANS_STMT_START)):
            ev.append(Event('begin'))
        elif kind in (int(k.TRANS_STMT_COMMIT), int(k.TRANS_STMT_ROLLBACK), int(k.TRANS_STMT_PREPARE)):
            ev.append(Event('commit'))
    elif isinstance(node, ast.VariableSetStmt):
        if node.name == 'lock_timeout':
            ev.append(Event('set_lock_timeout'))
    elif isinstance(node, ast.SelectStmt):
        for target in node.targetList or ():
            val = getattr(target, 'val', None)
            if isinstance(val, ast.FuncCall) and _name(val.funcname).rsplit('.', 1)[-1] == 'set_config' and \
                    val.args and _const_text(val.args[0]) == 'lock_timeout':
                ev.append(Event('set_lock_timeout'))
    elif isinstance(node, ast.CreateStmt):
        ev.append(Event('create_table', table=_name(node.relation)))
    elif isinstance(node, ast.CreateEnumStmt):
        ev.append(Event('create_type', type=_name(node.typeName)))
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        ev.append(Event('create_table', table=_name(node.into.rel)))
    elif isinstance(node, ast.InsertStmt):
        sources = []
        if node.selectStmt is not None and isinstance(node.selectStmt, ast.SelectStmt):
            for f in node.selectStmt.fromClause or ():
                if isinstance(f, ast.RangeVar):
                    sources.append(_name(f))
        ev.append(Event('insert', table=_name(node.relation), sources=sources))
    elif isinstance(node, ast.DropStmt):
        rtype = int(node.removeType)
        if rtype == int(O.OBJECT_TABLE):
            for obj in node.objects or ():
                ev.append(Event('drop_table', table=_name(obj)))
                ev.append(Event('exclusive_lock', table=_name(obj)))
        elif rtype == int(O.OBJECT_SCHEMA):
            for obj in node.objects or ():
                name = getattr(obj, 'sval', None) or (_name(obj) if isinstance(obj, tuple) else str(obj))
                ev.append(Event('drop_schema', schema=name))
        elif rtype == int(O.OBJECT_INDEX):
            ev.append(Event('drop_index', concurrently=bool(node.concurrent)))
    elif isinstance(node, ast.DropdbStmt):
        ev.append(Event('drop_schema', schema=node.dbname, database=True))
    elif isinstance(node, ast.TruncateStmt):
        ev.append(Event('truncate', tables=[_name(r) for r in node.relations or ()]))
        for rel in node.relations or ():
            ev.append(Event('exclusive_lock', table=_name(rel)))
    elif isinstance(node, ast.DeleteStmt):
        if node.whereClause is None:
            ev.append(Event('delete_all', table=_name(node.relation)))
    elif isinstance(node, ast.UpdateStmt):
        if node.whereClause is None:
            ev.append(Event('update_all', table=_name(node.relation)))
    elif isinstance(node, ast.IndexStmt):
        ev.append(Event('create_index', table=_name(node.relation), concurrently=bool(node.concurrent),
                        index=node.idxname))
    elif isinstance(node, ast.ReindexStmt):
        params = [getattr(p, 'defname', '') for p in (node.params or ())]
        ev.append(Event('reindex', concurrently='concurrently' in params))
    elif isinstance(node, ast.AlterEnumStmt):
        type_name = _name(node.typeName)
        if node.oldVal is not None:
            ev.append(Event('enum_rename_value', type=type_name, old=node.oldVal, new=node.newVal))
        else:
            ev.append(Event('enum_add_value', type=type_name, value=node.newVal,
                            positioned=node.newValNeighbor is not None))
    elif isinstance(node, ast.RenameStmt):
        rtype = int(node.renameType)
        if rtype == int(O.OBJECT_TABLE):
            ev.append(Event('rename_table', table=_name(node.relation), new=node.newname))
            ev.append(Event('exclusive_lock', table=_name(node.relation)))
        elif rtype == int(O.OBJECT_COLUMN) and int(node.relationType) == int(O.OBJECT_TABLE):
            ev.append(Event('rename_column', table=_name(node.relation), column=node.subname, new=node.newname))
            ev.append(Event('exclusive_lock', table=_name(node.relation)))
    elif isinstance(node, ast.AlterTableStmt) and int(node.objtype) == int(O.OBJECT_TABLE):
        _alter_table_events(node, ev)
    return ev


def _alter_table_events(node, ev):
    T = enums.AlterTableType
    C = enums.ConstrType
    table = _name(node.relation)
    heavy = False
    for cmd in node.cmds or ():
        sub = int(cmd.subtype)
        if sub not in _light_alters():
            heavy = True
        if sub == int(T.AT_AddColumn) and isinstance(cmd.def_, ast.ColumnDef):
            _column_def_events(table, cmd.def_, ev)
        elif sub == int(T.AT_DropColumn):
            ev.append(Event('drop_column', table=table, column=cmd.name))
        elif sub == int(T.AT_AlterColumnType) and isinstance(cmd.def_, ast.ColumnDef):
            ev.append(Event('alter_column_type', table=table, column=cmd.name,
                            type=_type_text(cmd.def_.typeName), using=cmd.def_.raw_default is not None))
        elif sub == int(T.AT_AddConstraint) and isinstance(cmd.def_, ast.Constraint):
            con = cmd.def_
            contype = int(con.contype)
            if contype in (int(C.CONSTR_FOREIGN), int(C.CONSTR_CHECK)):
                ev.append(Event('add_constraint', table=table, constraint=con.conname,
                                what='FOREIGN KEY' if contype == int(C.CONSTR_FOREIGN) else 'CHECK',
                                not_valid=bool(con.skip_validation)))
                if contype == int(C.CONSTR_FOREIGN) and len(node.cmds) == 1:
                    heavy = False    # SHARE ROW EXCLUSIVE, not ACCESS EXCLUSIVE
    if heavy:
        ev.append(Event('exclusive_lock', table=table))


def _scan(text):
    """PostgreSQL's scanner: (tokens, error). Comments are tokens (SQL_COMMENT, C_COMMENT)."""
    try:
        return list(pg_parser.scan(text)), None
    except Exception as e:  # unterminated string or comment: the scanner stops there
        return None, str(e.args[0]) if getattr(e, 'args', None) else str(e)


def _split(text, tokens):
    """(start, end) of each statement: the runs of non-comment tokens between ';' tokens."""
    out, first, last = [], None, None
    for tok in tokens:
        if tok.name in ('SQL_COMMENT', 'C_COMMENT'):
            continue
        if tok.name == 'ASCII_59':
            if first is not None:
                out.append((first, last + 1))
            first = last = None
            continue
        if first is None:
            first = tok.start
        last = tok.end
    if first is not None:
        out.append((first, last + 1))
    return out


def parse(text, line_offset=0):
    """Statements of a PostgreSQL source. line_offset: lines before the text in its file."""
    starts = line_starts(text)
    tokens, scan_error = _scan(text)
    if tokens is None:
        return [Statement(text.strip(), 1 + line_offset,
                          error='the scanner cannot read this text (%s)' % scan_error)]
    code_starts = [t.start for t in tokens if t.name not in ('SQL_COMMENT', 'C_COMMENT')]
    pieces = []
    complex_spans = sqlcheck.pg_too_complex(tokens)
    try:
        if complex_spans:
            raise pg_parser.ParseError('too complex')
        for raw in pg_parser.parse_sql(text):
            loc = raw.stmt_location or 0
            i = bisect.bisect_left(code_starts, loc)
            begin = code_starts[i] if i < len(code_starts) else loc
            end = loc + raw.stmt_len if raw.stmt_len else len(text)
            pieces.append((begin, end, raw.stmt, None))
    except pg_parser.ParseError:
        pieces = []
        for begin, end in _split(text, tokens):
            if any(b <= begin < e for b, e in complex_spans):
                pieces.append((begin, end, None, 'the statement is nested too deeply for the parser to read (a chain '
                                                 'of more than %d operators); it was not checked'
                               % sqlcheck.MAX_PG_BINARY_OPERATORS))
                continue
            try:
                parsed = pg_parser.parse_sql(text[begin:end])
                pieces.append((begin, end, parsed[0].stmt if parsed else None, None))
            except pg_parser.ParseError as e:
                pieces.append((begin, end, None, str(e.args[0]) if e.args else str(e)))
    placed = []  # (Statement, start, end)
    for begin, end, node, err in pieces:
        if node is None and err is None:
            continue
        stmt_text = text[begin:end].rstrip().rstrip(';').rstrip()
        line = line_of(starts, begin) + line_offset
        if err is not None:
            if 'memory exhausted' in err or 'stack depth' in err:
                err = ('the statement is nested too deeply for the parser to read (PostgreSQL\'s own parser stops '
                       'there too); it was not checked')
            stmt = Statement(stmt_text, line, error=err)
        else:
            stmt = Statement(stmt_text, line, statement_events(node))
        placed.append((stmt, begin, end))
    if 'dbops:ignore' in text:
        comments = []
        for tok in tokens:
            if tok.name in ('SQL_COMMENT', 'C_COMMENT'):
                body = text[tok.start:tok.end + 1]
                comments.append((tok.start, body[2:] if tok.name == 'SQL_COMMENT' else body[2:-2]))
        attach_ignores(placed, comments, starts)
        for stmt in (p[0] for p in placed):
            stmt.ignores = [(r, why, ln + line_offset) for r, why, ln in stmt.ignores]
    return [p[0] for p in placed]
