"""The lookup and filter plugins the roles connect and verify with."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError

from ansible_collections.dbops.maintenance.plugins.filter.change_entry import change_entry
from ansible_collections.dbops.maintenance.plugins.filter.failure_message import failure_message
from ansible_collections.dbops.maintenance.plugins.filter.fix_checks import fix_checks, schema_objects
from ansible_collections.dbops.maintenance.plugins.filter.report import host_outcome, production_changes, report_summary
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


def test_change_entry_counts_the_statements_of_a_quiet_plan_or_rehearsal():
    # changed_when: false on the plan/rehearsal steps: their would-change is in the statements
    results = [{"item": "a", "changed": False, "queries": ["ALTER TABLE t ADD c int"]},
               {"item": "b", "changed": False, "queries": []},
               {"item": "c", "changed": False, "failed": True, "queries": ["ALTER TABLE t ADD d int"]}]
    [entry] = change_entry(results, "schema_fix", "app", False, True, True)
    assert entry["items"] == ["a"] and entry["queries"] == ["ALTER TABLE t ADD c int"] and entry["plan"]
    assert change_entry(results, "schema_fix", "dbops_scratch_app", True)[0]["rehearsal"] is True
    # production: only what reported changed counts
    assert change_entry(results, "schema_fix", "app") == []


CHANGES = [
    {"step": "schema_fix", "plan": True, "rehearsal": False, "queries": ["ALTER TYPE x ADD VALUE 'a'"]},
    {"step": "schema_fix", "plan": False, "rehearsal": True, "queries": ["ALTER TYPE x ADD VALUE 'a'"]},
    {"step": "schema_fix", "plan": False, "rehearsal": False, "queries": ["ALTER TYPE x ADD VALUE 'a'"]},
    {"step": "migration_repair", "queries": ["UPDATE _prisma_migrations SET finished_at = now()"]},
]


def test_production_changes_leaves_out_plan_and_rehearsal():
    assert production_changes(CHANGES) == CHANGES[2:]
    assert production_changes(CHANGES[:2]) == []
    assert production_changes(None) == []


@pytest.mark.parametrize("bad, message", [("x", "expected the list"), (["x"], "entry 0 of dbops_changes is a str")])
def test_production_changes_refuses_what_is_not_a_change_record(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        production_changes(bad)


@pytest.mark.parametrize("changes, outcome, error, expected", [
    (CHANGES, None, None, "changed"),
    (CHANGES[:2], None, None, "unchanged"),      # only the plan and the rehearsal changed something
    ([], "", "boom", "failed"),
    (CHANGES, "rolled_back", "boom", "rolled_back"),
    (CHANGES[:2], "unchanged", "", "unchanged"),
])
def test_host_outcome(changes, outcome, error, expected):
    assert host_outcome(changes, outcome, error) == expected


def test_host_outcome_refuses_an_unknown_outcome():
    with pytest.raises(AnsibleFilterError, match="outcome must be one of"):
        host_outcome([], "exploded")


def _record(host, outcome, start, phases, changes=(), flavour="postgresql"):
    marks, t = [], start
    for phase, seconds in phases:
        marks.append({"phase": phase, "at": t})
        t += seconds
    marks.append({"phase": "end", "at": t})
    return {"host": host, "outcome": outcome, "changes": list(changes), "timeline": marks, "engine": "postgresql",
            "server": {"flavour": flavour, "version": "10.11.6"}, "error": "" if outcome != "failed" else "boom"}


def test_report_summary_orders_batches_canary_first_and_draws_the_timeline():
    rows = [_record("db2", "unchanged", 110.0, [("preflight", 2), ("verify", 3)]),
            _record("db1", "changed", 100.0, [("preflight", 1), ("plan", 2), ("backup", 3), ("change", 2), ("verify", 2)],
                    CHANGES, flavour="mariadb"),
            _record("db3", "failed", 110.0, [("preflight", 1), ("change", 4), ("rollback", 5)], CHANGES[2:3])]
    s = report_summary(rows, ["db1", "db2", "db3", "db4"], [["db1"], ["db2", "db3"]], True)
    assert s["counts"] == {"hosts": 4, "changed": 1, "unchanged": 1, "failed": 1, "rolled_back": 0, "not_run": 1}
    assert s["drift"] == {"compared": 0, "drifted": 0} and s["has_drift"] is False
    assert all(h.get("drift_view") is None for h in s["hosts"] if h["outcome"] != "not_run")
    assert [b["label"] for b in s["batches"]] == ["batch 1 (canary)", "batch 2", "not run"]
    assert [[h["host"] for h in b["hosts"]] for b in s["batches"]] == [["db1"], ["db2", "db3"], ["db4"]]
    assert s["check_mode"] is True and s["not_run"] == ["db4"] and s["span_s"] == 20.0
    assert s["order"] == [["db1"], ["db2", "db3"]]
    db1, db2, db3 = s["hosts"]
    assert db1["server_label"] == "mariadb 10.11.6"
    assert [seg["phase"] for seg in db1["timeline"]] == ["preflight", "plan", "backup", "change", "verify"]
    assert db1["timeline"][0] == {"phase": "preflight", "seconds": 1.0, "left": 0.0, "width": 5.0}
    assert db3["timeline"][-1] == {"phase": "rollback", "seconds": 5.0, "left": 75.0, "width": 25.0}
    # statements shown without a click: changed and failed hosts that have some
    assert (db1["open"], db2["open"], db3["open"]) == (True, False, True)
    assert db1["statements"] == 2 and [c["step"] for c in db1["production"]] == ["schema_fix", "migration_repair"]


def test_report_summary_without_batches_or_timeline():
    rows = [{"host": "b", "changes": []}, {"host": "a", "changes": CHANGES, "outcome": ""}]
    s = report_summary(rows)
    assert s["counts"]["changed"] == 1 and s["counts"]["unchanged"] == 1 and s["counts"]["hosts"] == 2
    assert [b["label"] for b in s["batches"]] == ["batch 1"]
    assert [h["host"] for h in s["batches"][0]["hosts"]] == ["a", "b"]
    assert all(h["timeline"] == [] for h in s["hosts"]) and s["span_s"] == 0.0
    # one host alone is not a canary
    assert report_summary([rows[0]], ["b"], [["b"]])["batches"][0]["canary"] is False


def test_report_summary_drift_column_labels_counts_and_bounded_values():
    entries = [{"kind": "column", "name": "users.note", "what": "unexpected", "reference": None,
                "actual": {"type": "text", "nullable": True}}] * 205
    rows = [{"host": "a", "changes": [], "drift": {"in_sync": True, "summary": "in sync", "drift": []}},
            {"host": "b", "changes": [], "drift": {"in_sync": False, "summary": "205 differences", "drift": entries,
                                                   "sql": ["ALTER TABLE users DROP COLUMN note"]}},
            {"host": "c", "changes": [], "error": "cannot connect", "drift": {"in_sync": None, "error": "cannot connect"}},
            {"host": "d", "changes": []}]
    s = report_summary(rows)
    views = {h["host"]: h["drift_view"] for h in s["hosts"]}
    assert s["has_drift"] is True and s["drift"] == {"compared": 2, "drifted": 1}
    assert (views["a"]["label"], views["b"]["label"], views["c"]["label"]) == ("in sync", "205 differences",
                                                                               "not compared")
    assert views["d"] is None
    assert len(views["b"]["rows"]) == 200 and views["b"]["more"] == 5
    assert views["b"]["rows"][0] == {"kind": "column", "name": "users.note", "what": "unexpected", "reference": "",
                                     "actual": '{"nullable": true, "type": "text"}'}
    assert views["b"]["sql"] == ["ALTER TABLE users DROP COLUMN note"]
    one = report_summary([{"host": "x", "drift": {"in_sync": False, "drift": [{"kind": "view", "name": "v",
                                                                               "what": "definition",
                                                                               "reference": "x" * 1000}]}}])
    view = one["hosts"][0]["drift_view"]
    assert view["label"] == "1 difference" and len(view["rows"][0]["reference"]) == 303
    # a record that is not what drift_report.yml writes is not compared, never an error
    assert report_summary([{"host": "y", "drift": {"drift": "oops"}}])["hosts"][0]["drift_view"]["label"] == "not compared"


def test_schema_objects_names_the_objects_as_schema_diff_does():
    enums = [{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]},
             {"name": "state", "schema": "Billing", "values": ["x"]},
             {"table": "t", "column": "c", "values": ["a"]}]
    columns = [{"table": "shipment_records", "column": "shipmentFile", "type": "varchar(191)"},
               {"table": "t", "column": "odd name", "state": "absent"}]
    indexes = [{"name": "orders_user_idx", "table": "orders", "columns": ["user_id"]}]
    constraints = [{"type": "foreign_key", "table": "quotas", "name": "quotas_user_fk", "columns": ["user_id"]},
                   {"type": "check", "table": "orders", "name": "orders_total_ck"},
                   {"type": "unique", "table": "users", "name": "users_email_key"},
                   {"type": "primary_key", "table": "t", "name": "t_pkey"}]
    assert schema_objects(enums, columns, indexes, constraints, "postgresql") == [
        {"kind": "enum", "name": "CredentialType"}, {"kind": "enum", "name": "Billing.state"},
        {"kind": "column", "name": "shipment_records.shipmentFile"}, {"kind": "column", "name": 't."odd name"'},
        {"kind": "index", "name": "orders.orders_user_idx"}, {"kind": "foreign_key", "name": "quotas.user_id"},
        {"kind": "check", "name": "orders.orders_total_ck"}, {"kind": "unique", "name": "users.users_email_key"},
        {"kind": "index", "name": "users.users_email_key"}, {"kind": "primary_key", "name": "t"}]
    mysql = schema_objects(enums, [], [], constraints[:1], "mysql")
    assert mysql == [{"kind": "column", "name": "t.c"}, {"kind": "foreign_key", "name": "quotas.user_id"},
                     {"kind": "index", "name": "quotas.quotas_user_fk"}]
    assert schema_objects(None, None, None, None, "sqlite") == []
    # enum_fix.yml's `default(omit)` inside dbops_enums is still a placeholder when the role reads it
    omit = "__omit_place_holder__5b1f2c"
    assert schema_objects([{"name": "CredentialType", "schema": omit, "table": omit, "values": ["X"]}],
                          engine="postgresql") == [{"kind": "enum", "name": "CredentialType"}]
    # ansible-core 2.19 passes its Omit object itself (any object that is not data is "not given")
    assert schema_objects([{"name": "CredentialType", "schema": object()}], engine="postgresql") == [
        {"kind": "enum", "name": "CredentialType"}]
    with pytest.raises(AnsibleFilterError, match="dbops_columns item 0 is a str"):
        schema_objects([], ["t.c"], [], [], "sqlite")
    with pytest.raises(AnsibleFilterError, match="engine must be"):
        schema_objects([], engine="oracle")
