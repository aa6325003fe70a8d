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
import re

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


# pg_catalog types whose short text (_short_type_text) is what RawStream prints.
SHORT_IS_EXACT = frozenset(('int2', 'int4', 'int8', 'varchar', 'numeric', 'timestamp', 'bpchar'))


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


# Functions PostgreSQL evaluates once per statement (STABLE / IMMUTABLE built-ins): a DEFAULT made only of them
# and constants is stored in the catalog (PostgreSQL 11+) instead of rewriting the table. Any other function,
# including every user-defined one (VOLATILE unless declared otherwise), is taken as volatile.
NON_VOLATILE_FUNCS = frozenset((
    'now', 'transaction_timestamp', 'statement_timestamp', 'current_date', 'current_time', 'current_timestamp',
    'localtime', 'localtimestamp', 'current_user', 'current_schema', 'current_database', 'session_user', 'lower',
    'upper', 'btrim', 'ltrim', 'rtrim', 'trim', 'concat', 'concat_ws', 'coalesce', 'nullif', 'greatest', 'least',
    'to_timestamp', 'to_date', 'to_char', 'to_number', 'make_date', 'make_time', 'make_interval', 'make_timestamp',
    'make_timestamptz', 'date_trunc', 'jsonb_build_object', 'json_build_object', 'jsonb_build_array',
    'json_build_array', 'array_fill', 'format', 'md5', 'length', 'replace', 'substring', 'substr', 'abs', 'round',
    'floor', 'ceil', 'int4range', 'int8range', 'numrange', 'tstzrange', 'daterange', 'tsrange', 'to_jsonb',
    'to_json', 'jsonb', 'json', 'array_to_string', 'string_to_array', 'repeat', 'lpad', 'rpad', 'left', 'right',
    'age', 'date_part', 'extract', 'timezone', 'encode', 'decode', 'sha256', 'inet', 'cidr', 'point', 'pg_catalog',
))
SERIAL_TYPES = {'serial': 'int4', 'serial4': 'int4', 'smallserial': 'int2', 'serial2': 'int2', 'bigserial': 'int8',
                'serial8': 'int8'}
INT_TYPES = {'int4': 'integer', 'int2': 'smallint', 'integer': 'integer', 'int': 'integer', 'smallint': 'smallint'}


def _is_constant(node):
    """Whether a DEFAULT expression is the same value for every row (no table rewrite on PostgreSQL 11+)."""
    if node is None or isinstance(node, (ast.A_Const, ast.SQLValueFunction)):
        return True
    if isinstance(node, ast.TypeCast):
        return _is_constant(node.arg)
    if isinstance(node, ast.CollateClause):
        return _is_constant(node.arg)
    if isinstance(node, ast.A_ArrayExpr):
        return all(_is_constant(e) for e in node.elements or ())
    if isinstance(node, ast.A_Expr):
        return _is_constant(node.lexpr) and _is_constant(node.rexpr)
    if isinstance(node, ast.BoolExpr):
        return all(_is_constant(a) for a in node.args or ())
    if isinstance(node, (ast.CoalesceExpr, ast.MinMaxExpr)):
        return all(_is_constant(a) for a in node.args or ())
    if isinstance(node, ast.FuncCall):
        name = _name(node.funcname).rsplit('.', 1)[-1].lower()
        return name in NON_VOLATILE_FUNCS and all(_is_constant(a) for a in node.args or ())
    return False


SHORT_TYPE_NAMES = {'bpchar': 'char', 'int4': 'integer', 'int2': 'smallint', 'int8': 'bigint',
                    'timestamp': 'timestamp', 'timestamptz': 'timestamptz', 'varchar': 'varchar'}


def _short_type_text(type_name, base):
    """The type as the messages show it, without pglast's printer (which costs as much as parsing)."""
    mods = []
    for mod in type_name.typmods or ():
        val = getattr(getattr(mod, 'val', None), 'ival', None)
        mods.append(str(val) if val is not None else '?')
    text = SHORT_TYPE_NAMES.get(base, base) + ('(%s)' % ', '.join(mods) if mods else '')
    return text + ('[]' if type_name.arrayBounds else '')


def _column_facts(coldef, with_text=True):
    """What the rules want to know about a column definition (CREATE TABLE or ADD COLUMN)."""
    C = enums.ConstrType
    names = [getattr(p, 'sval', '') for p in (coldef.typeName.names or ())] if coldef.typeName is not None else []
    base = names[-1].lower() if names else ''
    if coldef.typeName is None:
        type_text = ''
    elif with_text and not (len(names) == 2 and names[0] == 'pg_catalog' and base in SHORT_IS_EXACT and
                            not coldef.typeName.arrayBounds):
        type_text = _type_text(coldef.typeName)   # printing costs about as much as parsing: only when needed
    else:
        type_text = _short_type_text(coldef.typeName, base)
    typmods = bool(coldef.typeName is not None and coldef.typeName.typmods)
    facts = dict(column=coldef.colname, type=type_text, base=base, typmods=typmods,
                 array=bool(coldef.typeName is not None and coldef.typeName.arrayBounds),
                 serial=base in SERIAL_TYPES, not_null=False, primary_key=False, unique=False, references=None,
                 default=None, identity=False, generated_stored=False)
    for con in coldef.constraints or ():
        kind = int(con.contype)
        if kind == int(C.CONSTR_DEFAULT):
            facts['default'] = 'constant' if _is_constant(con.raw_expr) else 'volatile'
        elif kind == int(C.CONSTR_IDENTITY):
            facts['identity'] = True
        elif kind == int(C.CONSTR_GENERATED):
            facts['generated_stored'] = True
        elif kind == int(C.CONSTR_NOTNULL):
            facts['not_null'] = True
        elif kind == int(C.CONSTR_PRIMARY):
            facts['primary_key'] = facts['not_null'] = True
        elif kind == int(C.CONSTR_UNIQUE):
            facts['unique'] = True
        elif kind == int(C.CONSTR_FOREIGN):
            facts['references'] = _name(con.pktable)
    if coldef.raw_default is not None and facts['default'] is None:
        facts['default'] = 'constant' if _is_constant(coldef.raw_default) else 'volatile'
    return facts


def _column_type_event(table, facts, how, ev):
    ev.append(Event('column_type', table=table, how=how, **facts))


def _column_def_events(table, coldef, events, if_not_exists=False):
    facts = _column_facts(coldef)
    has_default = bool(facts['default'] or facts['identity'] or facts['generated_stored'] or facts['serial'])
    events.append(Event('add_column', table=table, column=coldef.colname, not_null=facts['not_null'],
                        has_default=has_default, type=facts['type'],
                        default=('serial' if facts['serial'] else 'identity' if facts['identity'] else
                                 'generated' if facts['generated_stored'] else facts['default']),
                        if_not_exists=if_not_exists))
    _column_type_event(table, facts, 'add', events)
    if facts['primary_key'] or facts['unique']:
        events.append(Event('add_index_constraint', table=table, constraint=None,
                            what='PRIMARY KEY' if facts['primary_key'] else 'UNIQUE', using_index=False))
    if facts['references']:
        events.append(Event('add_constraint', table=table, constraint=None, what='FOREIGN KEY', not_valid=False,
                            inline=True))


# Statements on existing objects that take a lock worth a lock_timeout even when it is not ACCESS EXCLUSIVE
# (a catalog lock, SHARE UPDATE EXCLUSIVE of CONCURRENTLY, ...). CREATE TABLE, DML, SET, BEGIN are not among them.
WEAK_LOCK_NODES = tuple(getattr(ast, n) for n in (
    'AlterTableStmt', 'AlterEnumStmt', 'AlterDomainStmt', 'CreateDomainStmt', 'ViewStmt', 'IndexStmt', 'DropStmt',
    'DropdbStmt', 'VacuumStmt', 'ClusterStmt', 'LockStmt', 'ReindexStmt', 'RenameStmt', 'TruncateStmt',
    'AlterObjectSchemaStmt', 'AlterOwnerStmt', 'CreateTrigStmt', 'RuleStmt', 'RefreshMatViewStmt',
    'CreatePolicyStmt', 'AlterPolicyStmt', 'CommentStmt', 'GrantStmt') if HAS_PGLAST and hasattr(ast, n))
LOCK_MODES = {1: 'ACCESS SHARE', 2: 'ROW SHARE', 3: 'ROW EXCLUSIVE', 4: 'SHARE UPDATE EXCLUSIVE', 5: 'SHARE',
              6: 'SHARE ROW EXCLUSIVE', 7: 'EXCLUSIVE', 8: 'ACCESS EXCLUSIVE'}


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
        elif node.name == 'statement_timeout':
            ev.append(Event('set_statement_timeout'))
    elif isinstance(node, ast.SelectStmt):
        for target in node.targetList or ():
            val = getattr(target, 'val', None)
            if isinstance(val, ast.FuncCall) and _name(val.funcname).rsplit('.', 1)[-1] == 'set_config' and \
                    val.args and _const_text(val.args[0]) in ('lock_timeout', 'statement_timeout'):
                ev.append(Event('set_' + _const_text(val.args[0])))
    elif isinstance(node, ast.CreateStmt):
        table = _name(node.relation)
        ev.append(Event('create_table', table=table, if_not_exists=bool(node.if_not_exists)))
        for elt in node.tableElts or ():
            if isinstance(elt, ast.ColumnDef):
                _column_type_event(table, _column_facts(elt, with_text=False), 'create', ev)
    elif isinstance(node, ast.CreateEnumStmt):
        ev.append(Event('create_type', type=_name(node.typeName)))
    elif isinstance(node, ast.CreateDomainStmt):
        ev.append(Event('create_type', type=_name(node.domainname)))
        checks = [c for c in node.constraints or () if int(c.contype) == int(enums.ConstrType.CONSTR_CHECK)]
        if checks:
            ev.append(Event('domain_constraint', domain=_name(node.domainname), how='create'))
    elif isinstance(node, ast.AlterDomainStmt):
        if node.subtype == 'C' and node.def_ is not None and not getattr(node.def_, 'skip_validation', False):
            ev.append(Event('domain_constraint', domain=_name(node.typeName), how='alter'))
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        ev.append(Event('create_table', table=_name(node.into.rel), if_not_exists=bool(node.if_not_exists)))
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
                ev.append(Event('drop_table', table=_name(obj), if_exists=bool(node.missing_ok)))
                ev.append(Event('exclusive_lock', table=_name(obj)))
        elif rtype == int(O.OBJECT_SCHEMA):
            for obj in node.objects or ():
                name = getattr(obj, 'sval', None) or (_name(obj) if isinstance(obj, tuple) else str(obj))
                ev.append(Event('drop_schema', schema=name))
        elif rtype == int(O.OBJECT_INDEX):
            names = [_name(obj) for obj in node.objects or ()]
            ev.append(Event('drop_index', concurrently=bool(node.concurrent), index=', '.join(names),
                            if_exists=bool(node.missing_ok)))
            if not node.concurrent:
                ev.append(Event('exclusive_lock', table=None, what='the table of index %s' % ', '.join(names)))
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
        seen, dup = set(), []
        for target in node.targetList or ():
            name = getattr(target, 'name', None)
            if name in seen and name not in dup:
                dup.append(name)
            seen.add(name)
        if dup:
            ev.append(Event('duplicate_assignment', table=_name(node.relation), columns=dup))
    elif isinstance(node, ast.IndexStmt):
        ev.append(Event('create_index', table=_name(node.relation), concurrently=bool(node.concurrent),
                        index=node.idxname, unique=bool(node.unique), if_not_exists=bool(node.if_not_exists)))
        ev.append(Event('share_lock', table=_name(node.relation), concurrently=bool(node.concurrent)))
    elif isinstance(node, ast.ReindexStmt):
        params = [getattr(p, 'defname', '') for p in (node.params or ())]
        target = _name(node.relation) if node.relation is not None else node.name
        ev.append(Event('reindex', concurrently='concurrently' in params, target=target))
        ev.append(Event('share_lock', table=None, what='%s (REINDEX)' % target, concurrently='concurrently' in params))
    elif isinstance(node, ast.VacuumStmt):
        opts = [getattr(o, 'defname', '') for o in (node.options or ())]
        if node.is_vacuumcmd and 'full' in opts:
            tables = [_name(r.relation) for r in node.rels or () if getattr(r, 'relation', None) is not None]
            ev.append(Event('table_rewrite', command='VACUUM FULL', tables=tables))
            ev.append(Event('exclusive_lock', table=tables[0] if tables else None, what='every table'))
    elif isinstance(node, ast.ClusterStmt):
        ev.append(Event('table_rewrite', command='CLUSTER',
                        tables=[_name(node.relation)] if node.relation is not None else []))
        ev.append(Event('exclusive_lock', table=_name(node.relation) if node.relation is not None else None,
                        what='every clustered table'))
    elif isinstance(node, ast.LockStmt):
        tables = [_name(r) for r in node.relations or ()]
        ev.append(Event('lock_table', tables=tables, mode=LOCK_MODES.get(int(node.mode), str(node.mode)),
                        nowait=bool(node.nowait)))
        ev.append(Event('exclusive_lock' if int(node.mode) >= 5 else 'weak_lock', table=tables[0] if tables else None))
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
            ev.append(Event('rename_table', table=_name(node.relation), new=node.newname,
                            if_exists=bool(node.missing_ok)))
            ev.append(Event('exclusive_lock', table=_name(node.relation)))
        elif rtype == int(O.OBJECT_COLUMN) and int(node.relationType) == int(O.OBJECT_TABLE):
            ev.append(Event('rename_column', table=_name(node.relation), column=node.subname, new=node.newname,
                            if_exists=bool(node.missing_ok)))
            ev.append(Event('exclusive_lock', table=_name(node.relation)))
    elif isinstance(node, ast.AlterTableStmt) and int(node.objtype) == int(O.OBJECT_TABLE):
        _alter_table_events(node, ev)
    if isinstance(node, WEAK_LOCK_NODES) and not any(e.kind in ('exclusive_lock', 'share_lock') for e in ev):
        table = getattr(node, 'relation', None)
        command = re.sub(r'(?<=[a-z])(?=[A-Z])', ' ', type(node).__name__[:-4]).upper()
        ev.append(Event('weak_lock', table=_name(table) if table is not None else None,
                        what='the object this %s statement changes' % command))
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
        ev.append(Event('alter_action', table=table, robust=bool(cmd.missing_ok)))
        if sub == int(T.AT_AddColumn) and isinstance(cmd.def_, ast.ColumnDef):
            _column_def_events(table, cmd.def_, ev, if_not_exists=bool(cmd.missing_ok))
        elif sub == int(T.AT_DropColumn):
            ev.append(Event('drop_column', table=table, column=cmd.name))
        elif sub == int(T.AT_AlterColumnType) and isinstance(cmd.def_, ast.ColumnDef):
            ev.append(Event('alter_column_type', table=table, column=cmd.name,
                            type=_type_text(cmd.def_.typeName), using=cmd.def_.raw_default is not None))
            facts = _column_facts(cmd.def_)
            facts['column'] = cmd.name
            _column_type_event(table, facts, 'alter', ev)
        elif sub == int(T.AT_SetNotNull):
            ev.append(Event('set_not_null', table=table, column=cmd.name))
        elif sub == int(T.AT_DropNotNull):
            ev.append(Event('drop_not_null', table=table, column=cmd.name))
        elif sub == int(T.AT_DetachPartition) and isinstance(cmd.def_, ast.PartitionCmd):
            ev.append(Event('detach_partition', table=table, partition=_name(cmd.def_.name),
                            concurrently=bool(cmd.def_.concurrent)))
        elif sub == int(T.AT_DropConstraint):
            ev.append(Event('drop_constraint', table=table, constraint=cmd.name))
        elif sub == int(T.AT_ValidateConstraint):
            ev.append(Event('validate_constraint', table=table, constraint=cmd.name))
        elif sub == int(T.AT_AddConstraint) and isinstance(cmd.def_, ast.Constraint):
            con = cmd.def_
            contype = int(con.contype)
            if contype in (int(C.CONSTR_FOREIGN), int(C.CONSTR_CHECK)):
                ev.append(Event('add_constraint', table=table, constraint=con.conname,
                                what='FOREIGN KEY' if contype == int(C.CONSTR_FOREIGN) else 'CHECK',
                                not_valid=bool(con.skip_validation), not_null_of=_not_null_check(con)))
                if contype == int(C.CONSTR_FOREIGN) and len(node.cmds) == 1:
                    heavy = False    # SHARE ROW EXCLUSIVE, not ACCESS EXCLUSIVE
            elif contype in (int(C.CONSTR_UNIQUE), int(C.CONSTR_PRIMARY), int(C.CONSTR_EXCLUSION)):
                ev.append(Event('add_index_constraint', table=table, constraint=con.conname,
                                what={int(C.CONSTR_UNIQUE): 'UNIQUE', int(C.CONSTR_PRIMARY): 'PRIMARY KEY'}.get(
                                    contype, 'EXCLUDE'), using_index=con.indexname))
    if heavy:
        ev.append(Event('exclusive_lock', table=table))


def _not_null_check(con):
    """The column of CHECK (col IS NOT NULL), else None."""
    expr = getattr(con, 'raw_expr', None)
    if isinstance(expr, ast.NullTest) and int(expr.nulltesttype) == int(enums.NullTestType.IS_NOT_NULL) and \
            isinstance(expr.arg, ast.ColumnRef) and expr.arg.fields:
        return getattr(expr.arg.fields[-1], 'sval', None)
    return None


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


MAX_IDENTIFIER_BYTES = 63


def _long_identifiers(text, tokens, placed):
    """An identifier_too_long event on the statement of each identifier over 63 bytes (NAMEDATALEN - 1), which
    PostgreSQL truncates silently (a NOTICE only): the object gets another name than the migration says."""
    # offsets count characters; a character is at most 4 bytes in UTF-8
    long_ones = [t for t in tokens if t.name == 'IDENT' and (t.end - t.start + 1) * 4 > MAX_IDENTIFIER_BYTES]
    if not long_ones or not placed:
        return
    begins = [b for _s, b, _e in placed]
    for tok in long_ones:
        raw = text[tok.start:tok.end + 1]
        name = raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()
        size = len(name.encode('utf-8'))
        if size <= MAX_IDENTIFIER_BYTES:
            continue
        i = bisect.bisect_right(begins, tok.start) - 1
        if i < 0 or placed[i][0].error is not None:
            continue
        placed[i][0].events.append(Event('identifier_too_long', name=name, size=size))


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
    _long_identifiers(text, tokens, placed)
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
