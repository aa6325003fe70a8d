"""roles/report's HTML as an operator sees it, rendered by a real headless browser (Debian chromium).

One play over four hosts that need no database (connection local): the facts the maintenance playbook leaves
(changes, backup, checks, timeline) are set per host, the report role writes the report after each serial batch
(canary, then two, then the rest), and the second batch's failure stops the rollout before the last host. Then:
the page contains every host in rollout order, MariaDB shows as MariaDB, the changed and failed hosts' statements
are visible without a click, the page loads nothing from outside, and chromium's screenshots at desktop and phone
width are not blank. A check-mode run of the same play says "would change" and shows no backup."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

HOSTS = ["db-canary", "db-a", "db-b", "db-late"]
INVENTORY = "[fleet]\n" + "".join(
    f"{h} ansible_connection=local ansible_python_interpreter={{python}}\n" for h in HOSTS)

PLAY = r"""
- name: A fleet run as the report sees it
  hosts: fleet
  gather_facts: false
  serial: [1, 2, "100%"]
  max_fail_percentage: 0
  vars:
    facts:
      db-canary:
        dbops_engine: mysql
        dbops_database: shop
        dbops_server: {engine: mysql, flavour: mariadb, version: "10.11.19"}
        dbops_changes:
          - {step: schema_fix, database: shop, rehearsal: false, plan: true, check_mode: true, items: [], queries: ["PLANNED ONLY"]}
          - {step: schema_fix, database: shop, rehearsal: false, plan: false, check_mode: false, items: [],
             queries: ["ALTER TABLE `shipment_records` MODIFY `status` ENUM('NEW','SHIPPED','RETURNED') NOT NULL"]}
        dbops_verify_result: {passed: 2, failed: 0, summary: "2 checks passed", failed_checks: [],
                              checks: [{name: "tables_min", ok: true}, {name: "enum shipment_records.status", ok: true}]}
      db-a:
        dbops_engine: postgresql
        dbops_database: app
        dbops_server: {engine: postgresql, flavour: postgresql, version: "15.10"}
        dbops_changes: []
        dbops_verify_result: {passed: 1, failed: 0, summary: "1 check passed", failed_checks: [], checks: [{name: "tables_min", ok: true}]}
      db-b:
        dbops_engine: postgresql
        dbops_database: billing
        dbops_server: {engine: postgresql, flavour: postgresql, version: "16.4"}
        dbops_changes:
          - {step: schema_fix, database: billing, rehearsal: false, plan: false, check_mode: false, items: [],
             queries: ["ALTER TYPE \"public\".\"CredentialType\" ADD VALUE IF NOT EXISTS 'PERSONAL_ACCESS_TOKEN'"]}
        dbops_verify_result: {passed: 1, failed: 1, summary: "1 of 2 checks failed",
                              failed_checks: [{name: "no orphans", ok: false, message: "returned false"}],
                              checks: [{name: "tables_min", ok: true}, {name: "no orphans", ok: false, message: "returned false"}]}
        dbops_outcome: rolled_back
        dbops_failed_step: Run the checks
        dbops_error: "db_verify: 1 of 2 check(s) failed: no orphans <script>alert(1)</script>"
        dbops_rollback: {backup: /var/backups/dbops/billing.dump.manifest.json, restored: true, verified: true, error: ""}
  tasks:
    - name: The host's facts
      ansible.builtin.set_fact:
        dbops_engine: "{{ facts[inventory_hostname].dbops_engine }}"
        dbops_database: "{{ facts[inventory_hostname].dbops_database }}"
        dbops_server: "{{ facts[inventory_hostname].dbops_server }}"
        dbops_changes: "{{ facts[inventory_hostname].dbops_changes }}"
        dbops_verify_result: "{{ facts[inventory_hostname].dbops_verify_result }}"
        dbops_started_epoch: "{{ now().timestamp() }}"
      when: inventory_hostname in facts

    - name: The outcome the playbook decided
      ansible.builtin.set_fact:
        dbops_outcome: "{{ facts[inventory_hostname].dbops_outcome }}"
        dbops_failed_step: "{{ facts[inventory_hostname].dbops_failed_step }}"
        dbops_error: "{{ facts[inventory_hostname].dbops_error }}"
        dbops_rollback: "{{ facts[inventory_hostname].dbops_rollback }}"
      when: facts[inventory_hostname].dbops_outcome is defined

    - name: The backup of the hosts that changed
      ansible.builtin.set_fact:
        dbops_backup: "{{ {'taken': false, 'would_write': '/var/backups/dbops/' ~ dbops_database ~ '.dump'} if ansible_check_mode else
                          {'taken': true, 'path': '/var/backups/dbops/' ~ dbops_database ~ '.dump',
                           'manifest_path': '/var/backups/dbops/' ~ dbops_database ~ '.dump.manifest.json',
                           'size': 123456, 'sha256': 'ab' * 32, 'verified': 'list', 'reused': false} }}"
      when: dbops_changes | default([]) | dbops.maintenance.production_changes | length > 0

    - name: The phases as the maintenance playbook marks them
      ansible.builtin.set_fact:
        dbops_timeline: >-
          {{ [{'phase': 'preflight', 'at': now().timestamp() - 9}, {'phase': 'plan', 'at': now().timestamp() - 8},
              {'phase': 'backup', 'at': now().timestamp() - 6}, {'phase': 'change', 'at': now().timestamp() - 4},
              {'phase': 'verify', 'at': now().timestamp() - 2}]
             + ([{'phase': 'rollback', 'at': now().timestamp() - 1}] if dbops_outcome | default('') == 'rolled_back' else []) }}
      when: inventory_hostname in facts

    - name: Report
      ansible.builtin.include_role:
        name: dbops.maintenance.report

    - name: Stop the rollout at the failed host
      ansible.builtin.fail:
        msg: rolled back
      when: dbops_outcome | default('') == 'rolled_back'
"""


def shoot(html, png, width, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (scripts/bootstrap.sh installs it)"
    profile = tmp_path / f"profile-{width}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", f"--window-size={width},1400", f"--screenshot={png}", html.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and png.is_file(), out.stdout[-2000:] + out.stderr[-2000:]
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        background = rgb.getpixel((rgb.width - 1, rgb.height - 1))
        pixels = rgb.getdata()
        ink = sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, background)) > 30)
        return rgb.size, ink / (rgb.width * rgb.height)


def run(ansible, tmp_path, run_id, check):
    inventory = INVENTORY.format(python=ansible.python)
    r = ansible.playbook(PLAY, extra_vars={"dbops_report_dir": str(tmp_path / "reports"), "dbops_report_run_id": run_id,
                                           "dbops_report_set_stats": False},
                         inventory=inventory, check=check)
    report_dir = tmp_path / "reports" / run_id
    assert (report_dir / "report.html").is_file(), r.stdout[-4000:] + r.stderr[-2000:]
    return r, json.loads((report_dir / "report.json").read_text()), report_dir / "report.html"


def test_report_html_renders_the_rollout_in_a_headless_browser(ansible, tmp_path):
    r, report, html_path = run(ansible, tmp_path, "real", check=False)
    assert r.rc != 0  # the rollout stopped at db-b
    html = html_path.read_text()
    # the rollout as it happened: canary first, then the batch that failed, then the host that never ran
    assert report["batches"] == [["db-canary"], ["db-a", "db-b"]], report["batches"]
    assert report["summary"] == {"hosts": 4, "changed": 1, "unchanged": 1, "failed": 0, "rolled_back": 1, "not_run": 1}
    for names in ('<span class="name">%s</span>', "<td>%s</td>"):  # the hosts' sections, the table at a glance
        positions = [html.index(names % h) for h in HOSTS]
        assert positions == sorted(positions), positions
    assert re.findall(r"<h2>([^<]*)</h2>", html) == ["batch 1 (canary)", "batch 2", "not run"]
    assert "mariadb 10.11.19" in html and "mysql 10.11.19" not in html
    # statements of the changed and the failed host without a click; the plan's are not production's
    assert html.count("<details open>") == 2 and "PLANNED ONLY" not in html
    assert "ALTER TABLE `shipment_records` MODIFY" in html
    # checks by name, the manifest, the timeline with the rollback phase
    assert "no orphans" in html and "enum shipment_records.status" in html
    assert "/var/backups/dbops/shop.dump.manifest.json" in html
    assert 'class="seg p-rollback"' in html and 'class="seg p-backup"' in html
    # escaped, self-contained
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", html), "the report loads something from outside"

    size, ink = shoot(html_path, tmp_path / "shot-desktop.png", 1280, tmp_path)
    assert size[0] == 1280 and ink > 0.03, ink

    # check mode: "would change" everywhere, no backup content
    r, report, html_path = run(ansible, tmp_path, "check", check=True)
    html = html_path.read_text()
    assert report["check_mode"] is True and report["summary"]["changed"] == 1
    assert "check mode: nothing was changed" in html and "would change: 1" in html and ">would change<" in html and "<span>changed: 1" not in html
    assert "none (check mode)" in html and "sha256" not in html and ".dump.manifest.json" not in html.replace(
        "/var/backups/dbops/billing.dump.manifest.json", "")
    # at phone width
    size, ink = shoot(html_path, tmp_path / "shot-phone.png", 390, tmp_path)
    assert size[0] == 390 and ink > 0.03, ink


@pytest.fixture(autouse=True)
def _no_leftover_profiles(tmp_path):
    yield
    for p in tmp_path.glob("profile-*"):
        shutil.rmtree(p, ignore_errors=True)
