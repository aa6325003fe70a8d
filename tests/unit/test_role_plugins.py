"""The lookup and filter plugins the roles connect and verify with."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError

from ansible_collections.dbops.maintenance.plugins.filter.change_entry import change_entry
from ansible_collections.dbops.maintenance.plugins.filter.failure_message import failure_message
from ansible_collections.dbops.maintenance.plugins.filter.fix_checks import fix_checks
from ansible_collections.dbops.maintenance.plugins.lookup.connection import connection_args


def test_connection_args_maps_the_flat_variables_and_leaves_out_unset_ones():
    hostvars = {"dbops_engine": "postgresql", "dbops_database": "app", "dbops_login_host": "10.0.0.5",
                "dbops_login_port": 5433, "dbops_login_password": "s3cr3t", "dbops_login_user": "",
                "dbops_ssl_mode": None, "dbops_lock_timeout": 2, "unrelated": 1}
    args = connection_args(hostvars.get)
    assert args == {"engine": "postgresql", "database": "app", "login_host": "10.0.0.5", "login_port": 5433,
                    "login_password": "s3cr3t"}
    # Safety options are not connection options (db_verify would reject lock_timeout).
    assert "lock_timeout" not in args


def test_connection_args_database_override_for_a_scratch_copy():
    get = {"dbops_engine": "mysql", "dbops_database": "shop"}.get
    assert connection_args(get, database="dbops_scratch_shop")["database"] == "dbops_scratch_shop"
    assert connection_args(get, database=None)["database"] == "shop"


@pytest.mark.parametrize("missing", ["dbops_engine", "dbops_database"])
def test_connection_args_names_the_missing_variable(missing):
    hostvars = {"dbops_engine": "sqlite", "dbops_database": "/srv/app.db"}
    del hostvars[missing]
    with pytest.raises(AnsibleError, match=missing):
        connection_args(hostvars.get)


def test_fix_checks_keeps_only_what_db_verify_knows():
    enums = [{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"], "after": "COOKIE", "create": False},
             {"table": "shipment_records", "column": "status", "values": ["RETURNED"], "allow_copy": True}]
    assert fix_checks(enums, "enum_values") == [
        {"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]},
        {"table": "shipment_records", "column": "status", "values": ["RETURNED"]}]
    columns = [{"table": "t", "column": "a", "type": "int", "default": "0", "nullable": False, "alter": True},
               {"table": "t", "column": "gone", "state": "absent", "allow_drop": True},
               {"table": "t", "column": "b"}]
    assert fix_checks(columns, "columns") == [{"table": "t", "column": "a", "type": "int", "nullable": False},
                                              {"table": "t", "column": "b"}]
    assert fix_checks(None, "columns") == []


@pytest.mark.parametrize("declarations, kind, message", [
    ([], "tables", "kind must be one of"),
    ("CredentialType", "enum_values", "expected a list"),
    (["CredentialType"], "enum_values", "item 0 is a str"),
])
def test_fix_checks_refuses_bad_input(declarations, kind, message):
    with pytest.raises(AnsibleFilterError, match=message):
        fix_checks(declarations, kind)


def test_change_entry_keeps_changed_items_and_their_statements_in_order():
    results = [
        {"item": {"name": "A"}, "changed": True, "queries": ["ALTER TYPE a ADD VALUE 'x'"]},
        {"item": {"name": "B"}, "changed": False, "queries": []},
        {"item": {"table": "t", "column": "c"}, "changed": True, "queries": ["ALTER TABLE t ADD c int", "COMMENT ON c"]},
        # the item of a loop that failed half-way: refused, changed nothing
        {"item": {"table": "t", "column": "d"}, "failed": True, "changed": False, "msg": "refused"},
        {"skipped": True},
    ]
    assert change_entry(results, "schema_fix", "app") == [{
        "step": "schema_fix", "database": "app", "rehearsal": False, "plan": False, "check_mode": False,
        "items": [{"name": "A"}, {"table": "t", "column": "c"}],
        "queries": ["ALTER TYPE a ADD VALUE 'x'", "ALTER TABLE t ADD c int", "COMMENT ON c"]}]


def test_change_entry_nothing_changed_and_flags():
    assert change_entry([{"changed": False}], "schema_fix", "app") == []
    assert change_entry(None, "schema_fix", "app") == []
    [entry] = change_entry([{"changed": True, "item": "m1"}], "migration_repair", "dbops_scratch_app",
                           rehearsal=True, plan=True)
    assert entry["rehearsal"] is True and entry["plan"] is True and entry["check_mode"] is True
    assert entry["queries"] == [] and entry["items"] == ["m1"]
    with pytest.raises(AnsibleFilterError, match="registered loop"):
        change_entry({"results": []}, "schema_fix", "app")


def test_failure_message_of_a_failed_loop_names_the_items():
    result = {"msg": "One or more items failed", "failed": True, "results": [
        {"changed": True, "item": "a"},
        {"failed": True, "msg": 'value too long for type character varying(5)', "item": "b"},
        {"failed": True, "msg": "refused: NOT NULL without a default", "item": "c"}]}
    assert failure_message(result) == ("value too long for type character varying(5); "
                                       "refused: NOT NULL without a default")


def test_failure_message_plain_task_stderr_and_default():
    assert failure_message({"msg": "db_verify: 1 of 3 check(s) failed"}) == "db_verify: 1 of 3 check(s) failed"
    assert failure_message({"stderr": "pg_dump: error"}) == "pg_dump: error"
    assert failure_message({}) == "unknown error"
    assert failure_message(None, "nothing") == "nothing"
