"""Pure functions of the connection layer (no servers)."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.engines import base
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql import catalog as mysql_catalog, connection as mysql_connection
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite import catalog as sqlite_catalog, connection as sqlite_connection
from ansible_collections.dbops.maintenance.plugins.module_utils import connection


@pytest.mark.parametrize("text, values", [
    ("enum('a','b')", ["a", "b"]),
    ("enum('it''s','x,y)','d\\\\e')", ["it's", "x,y)", "d\\e"]),
    ("enum('new\\nline','q\\'q')", ["new\nline", "q'q"]),
    ("enum('')", [""]),
])
def test_parse_mysql_enum_list(text, values):
    got, raw, end = mysql_catalog.parse_quoted_list(text, len("enum("))
    assert got == values
    assert end == len(text)
    assert "enum(" + ",".join(raw) + ")" == text


def test_parse_mysql_enum_list_keeps_rest_of_line():
    line = "`s` enum('a','b)') NOT NULL DEFAULT 'a' COMMENT 'x)'"
    values, _raw, end = mysql_catalog.parse_quoted_list(line, len("`s` enum("))
    assert values == ["a", "b)"] and line[end:] == " NOT NULL DEFAULT 'a' COMMENT 'x)'"


def test_parse_mysql_enum_list_unterminated():
    with pytest.raises(ValueError):
        mysql_catalog.parse_quoted_list("enum('a','b'", 5)


@pytest.mark.parametrize("name, quoted", [("a`b", "`a``b`"), ("x", "`x`"), ("é ü", "`é ü`")])
def test_mysql_quote_ident(name, quoted):
    assert mysql_connection.quote_ident(name) == quoted


@pytest.mark.parametrize("name, quoted", [('a"b', '"a""b"'), ("x; DROP", '"x; DROP"')])
def test_sqlite_quote_ident(name, quoted):
    assert sqlite_connection.quote_ident(name) == quoted


@pytest.mark.parametrize("a, b, same", [
    ("varchar(10)", "VARCHAR( 10 )", True), ("int", "INT", True), ("int", "integer", False),
    ("numeric(10, 2)", "NUMERIC(10,  2)", True),
])
def test_sqlite_type_normalisation(a, b, same):
    assert (sqlite_catalog.normalise_type(a) == sqlite_catalog.normalise_type(b)) is same


def test_similar_names_prefers_case_insensitive_match():
    assert base.similar("credentialtype", ["CredentialType", "Credential", "Other"])[0] == "CredentialType"
    assert base.similar("shipment_record", ["shipment_records", "users"]) == ["shipment_records"]
    assert base.similar("zzz", ["abc"]) == []
    assert base.did_you_mean("zzz", ["abc"]) == ""


def test_flavour_table_is_complete():
    keys = set(mysql_connection.FLAVOURS["mariadb"])
    assert keys == set(mysql_connection.FLAVOURS["mysql"])
    name, convert = mysql_connection.FLAVOURS["mysql"]["statement_timeout"]
    assert (name, convert(1.5)) == ("max_execution_time", 1500)
    name, convert = mysql_connection.FLAVOURS["mariadb"]["statement_timeout"]
    assert (name, convert(1.5)) == ("max_statement_time", 1.5)


def test_argument_spec_marks_secrets_no_log():
    spec = connection.dbops_argument_spec()
    assert spec["login_password"]["no_log"] is True
    assert {"lock_timeout", "lock_retries", "wait_for_lock", "statement_timeout"} <= set(spec)
    assert "lock_timeout" not in connection.dbops_argument_spec(changes=False)


class FakeModule:
    def __init__(self, **params):
        self.params = dict(lock_retries=2, lock_timeout=0.1, login_password="s3cret", database="d", **params)
        self.check_mode = False


class ScriptedAdapter(base.Adapter):
    """An adapter whose execute follows a script of outcomes: exercises the retry loop only."""

    retry_base_delay = 0.001

    def __init__(self, outcomes, **params):
        super().__init__(FakeModule(**params))
        self.outcomes = list(outcomes)
        self.executed = []

    def execute(self, statement):
        self.executed.append(statement)
        outcome = self.outcomes.pop(0)
        if outcome:
            raise outcome


def test_retry_then_success_records_attempts():
    a = ScriptedAdapter([base.LockTimeout("lock timeout"), None])
    a.apply([base.Step("ALTER 1")])
    assert a.executed == ["ALTER 1", "ALTER 1"] and a.queries == ["ALTER 1"]
    assert len(a.attempts) == 1 and a.attempts[0]["attempt"] == 1


def test_retries_exhausted_fails_with_count():
    a = ScriptedAdapter([base.LockTimeout("t")] * 3)
    with pytest.raises(base.DbopsError, match="tried 3 time"):
        a.apply([base.Step("ALTER 1")])
    assert a.queries == []


def test_unsupported_algorithm_falls_back_only_when_allowed():
    copy = base.Step("ALTER COPY", requires="allow_copy")
    step = base.Step("ALTER INSTANT", alternative=copy)
    a = ScriptedAdapter([base.Unsupported("needs copy")])
    with pytest.raises(base.DbopsError, match="Set allow_copy: true"):
        a.apply([step])
    assert a.queries == []
    a = ScriptedAdapter([base.Unsupported("needs copy"), None])
    a.apply([step], allow=dict(allow_copy=True))
    assert a.queries == ["ALTER COPY"]


def test_check_mode_executes_nothing():
    a = ScriptedAdapter([])
    a.check_mode = True
    a.apply([base.Step("ALTER 1"), base.Step("ALTER 2")])
    assert a.executed == [] and a.queries == ["ALTER 1", "ALTER 2"]


def test_redact_removes_password():
    a = ScriptedAdapter([])
    assert a.redact("password=s3cret failed") == "password=******** failed"
