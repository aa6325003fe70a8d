# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lock blocker's query for the output, with every literal replaced (redact_query).

The text comes from another session (pg_stat_activity, the processlist) and may hold secrets:
PostgreSQL's own parser and scanner (pglast) or sqlglot's MySQL tokenizer find the literals;
what neither can read is cut at its first possible literal, never shown raw.
"""

from __future__ import annotations

import re

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck

try:  # sqlglot is imported when a MySQL query is redacted (a PostgreSQL run does not pay for its import)
    import importlib.util
    HAS_SQLGLOT = importlib.util.find_spec('sqlglot') is not None
except (ImportError, ValueError):  # pragma: no cover - depends on the managed host
    HAS_SQLGLOT = False

# Longest blocker query (after redaction) that reaches the output.
BLOCKER_QUERY_MAX = 200

_PG_LITERALS = ('SCONST', 'USCONST', 'FCONST', 'ICONST', 'BCONST', 'XCONST', 'PARAM')
_MYSQL_LITERALS = ('STRING', 'NUMBER', 'HEX_STRING', 'BIT_STRING', 'NATIONAL_STRING', 'BYTE_STRING', 'RAW_STRING',
                   'HEREDOC_STRING', 'UNICODE_STRING')
# Where a literal may start: a quote of any kind, a dollar quote, or a digit not inside a word.
_LITERAL_START = re.compile(r"""['"]|\$[A-Za-z_0-9]*\$|(?<![A-Za-z_0-9$])[0-9]""")


def _replace_spans(text, spans, mark):
    out, pos = [], 0
    for start, end in spans:
        out.append(text[pos:start])
        out.append(mark)
        pos = end
    out.append(text[pos:])
    return ''.join(out)


def _cut_at_first_literal(text, mark):
    """Last resort: everything from the first possible literal on is replaced by `mark`."""
    m = _LITERAL_START.search(text)
    return text if m is None else text[:m.start()] + mark + ' ...'


def _redact_pg(text):
    parser = sqlcheck.load_pglast()[2]  # imported when a PostgreSQL query is first redacted (only a blocker's is)
    _pg_normalize, _pg_scan, _PgParseError = parser.normalize, parser.scan, parser.ParseError
    try:
        return _pg_normalize(text)
    except _PgParseError:
        pass
    # Not a whole statement (cut by track_activity_query_size, or not SQL): PostgreSQL's own
    # scanner finds the literals; the tail it cannot scan (an unterminated string) is dropped.
    limit = len(text)
    while True:
        try:
            tokens = _pg_scan(text[:limit])
            break
        except _PgParseError as e:
            where = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else 0
            if where <= 0 or where >= limit:
                return _cut_at_first_literal(text, '$?')
            limit = where
    spans = [(t.start, t.end + 1) for t in tokens if t.name in _PG_LITERALS]
    out = _replace_spans(text[:limit], spans, '$?')
    return out if limit == len(text) else _cut_at_first_literal(out + text[limit:], '$?')


def _redact_mysql(text):
    from sqlglot.dialects.mysql import MySQL
    from sqlglot.errors import TokenError
    try:
        tokens = MySQL().tokenize(text)
    except TokenError:
        # Unterminated string (the server cut the text): scan only what comes before it.
        return _cut_at_first_literal(text, '?')
    spans = [(t.start, t.end + 1) for t in tokens if t.token_type.name in _MYSQL_LITERALS]
    return _replace_spans(text, spans, '?')


def redact_query(text, engine, limit=BLOCKER_QUERY_MAX):
    """A blocker's query for the output: every literal replaced by a placeholder (pg_stat_statements
    style $1 on PostgreSQL, ? on MySQL/MariaDB), comments and names kept, cut to `limit` characters.

    The text comes from another session and may hold secrets (ALTER ROLE ... PASSWORD '...').
    When it cannot be parsed nor scanned, everything from the first quote or number on is dropped:
    it is never shown raw.
    """
    if text is None:
        return None
    text = str(text)
    try:
        if engine == 'postgresql' and sqlcheck.HAS_PGLAST:
            out = _redact_pg(text)
        elif engine == 'mysql' and HAS_SQLGLOT:
            out = _redact_mysql(text)
        else:
            out = _cut_at_first_literal(text, '?')
    except Exception:  # a redactor bug must not show the text
        out = _cut_at_first_literal(text, '?')
    out = ' '.join(out.split())
    if len(out) > limit:
        out = out[:limit - 3].rstrip() + '...'
    return out
