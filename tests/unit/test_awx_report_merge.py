"""The report_merge filter: the report parts of AWX job slices (and a canary job) merged into one fleet report,
every host counted once, without mixing check mode and real runs."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbops.maintenance.plugins.filter.report import report_summary
from ansible_collections.dbops.maintenance.plugins.filter.report_merge import part_key, report_merge


def rec(host, outcome):
    return {"host": host, "outcome": outcome, "changes": [], "timeline": []}


def part(run_id, written, records, not_run=(), check_mode=False, batches=None):
    return {"run_id": run_id, "job_id": run_id, "written": written, "check_mode": check_mode,
            "hosts": [rec(h, o) for h, o in records], "not_run": list(not_run),
            "batches": batches if batches is not None else [[r[0] for r in records]]}


def test_slices_and_canary_merge_to_one_report_with_every_host_once():
    canary = part("11", "2026-12-02T10:00:00Z", [("db01", "changed")])
    slice1 = part("13", "2026-12-02T10:05:00Z", [("db02", "unchanged"), ("db04", "failed")], not_run=["db06"])
    slice2 = part("12", "2026-12-02T10:04:00Z", [("db03", "changed"), ("db05", "rolled_back")])
    # the extra vars of the next workflow node: the parts under their keys, among other variables
    extra = {part_key(p["run_id"]): p for p in (slice1, canary, slice2)}
    extra.update(dbops_report_summary={"changed": 99}, awx_job_id=14)
    m = report_merge(extra)
    assert [p["run_id"] for p in m["parts"]] == ["11", "12", "13"]  # in the order they were written
    assert m["hosts_all"] == ["db01", "db03", "db05", "db02", "db04", "db06"]
    assert m["duplicates"] == {} and m["check_mode"] is False
    counts = report_summary(m["rows"], m["hosts_all"], m["batches"], m["check_mode"])["counts"]
    assert counts == {"hosts": 6, "not_run": 1, "changed": 2, "unchanged": 1, "failed": 1, "rolled_back": 1}
    view = report_summary(m["rows"], m["hosts_all"], m["batches"])
    assert view["batches"][0]["canary"] and [h["host"] for h in view["batches"][0]["hosts"]] == ["db01"]


def test_a_host_in_two_parts_is_counted_once_with_its_most_serious_outcome():
    # the canary host also in a slice (the sliced template's limit did not leave it out): changed, then unchanged
    canary = part("1", "2026-12-02T10:00:00Z", [("db01", "changed")])
    again = part("2", "2026-12-02T10:01:00Z", [("db01", "unchanged"), ("db02", "failed")])
    later = part("3", "2026-12-02T10:02:00Z", [("db02", "changed")], not_run=["db01"])
    m = report_merge([later, again, canary])
    outcomes = {r["host"]: (r["outcome"], r["report_part"]) for r in m["rows"]}
    assert outcomes == {"db01": ("changed", "1"), "db02": ("failed", "2")}
    assert sorted(m["duplicates"]) == ["db01", "db02"] and len(m["duplicates"]["db01"]) == 2
    counts = report_summary(m["rows"], m["hosts_all"], m["batches"])["counts"]
    assert counts["hosts"] == 2 and counts["not_run"] == 0 and counts["changed"] == 1 and counts["failed"] == 1


@pytest.mark.parametrize("value, message", [
    ([], "no report part"),
    ({"unrelated": 1}, "no report part"),
    ("dbops_report_part_1", "expected a list"),
    ([["not", "a", "dict"]], "part 0 is a list"),
    ([{"run_id": "7", "hosts": {"db01": {}}}], "hosts must be a list"),
    ([{"run_id": "7", "hosts": [{"outcome": "changed"}]}], "host record 0 has no host name"),
    ([part("1", "a", [("db01", "changed")], check_mode=True), part("2", "b", [("db02", "changed")])],
     "refusing to merge check-mode parts with real runs"),
])
def test_bad_parts_are_refused_with_what_is_wrong(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        report_merge(value)


def test_part_key_is_a_variable_name():
    assert part_key(4711) == "dbops_report_part_4711"
    assert part_key("20261202T101000Z") == "dbops_report_part_20261202T101000Z"
    assert part_key("a-b.c/{{ x }}") == "dbops_report_part_a_b_c____x___"
