"""Driver of scripts/demo.sh: seed incidents on throwaway servers, fix them with playbooks/maintenance.yml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "build" / "demo-reports"
sys.path.insert(0, str(ROOT / "tests"))

from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position

import psycopg  # noqa: E402
import pymysql  # noqa: E402


def banner(text):
    print("\n\033[1m== %s ==\033[0m" % text, flush=True)


def seed(pg, my):
    banner("Seeding the incidents")
    with psycopg.connect(host=pg["login_host"], port=pg["login_port"], user=pg["login_user"],
                         password=pg["login_password"], dbname="postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS tdp")
        c.execute("CREATE DATABASE tdp")
    with psycopg.connect(host=pg["login_host"], port=pg["login_port"], user=pg["login_user"],
                         password=pg["login_password"], dbname="tdp", autocommit=True) as c:
        c.execute('''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'OAUTH_TOKEN', 'COOKIE', 'PASSWORD', 'ENCRYPTED')''')
        c.execute('''CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, platform text NOT NULL,
                     type "CredentialType" NOT NULL, "createdAt" timestamptz NOT NULL DEFAULT now())''')
        c.execute('''INSERT INTO "ExternalCredential" (platform, type) VALUES ('gitlab', 'API_KEY')''')
        try:
            c.execute('''INSERT INTO "ExternalCredential" (platform, type) VALUES ('github', 'PERSONAL_ACCESS_TOKEN')''')
        except psycopg.Error as e:
            print("PostgreSQL tdp: saving a GitHub credential fails: %s (SQLSTATE %s)" % (str(e).strip(), e.sqlstate))
    c = pymysql.connect(host=my["login_host"], port=my["login_port"], user=my["login_user"],
                        password=my["login_password"], autocommit=True)
    cur = c.cursor()
    cur.execute("DROP DATABASE IF EXISTS shipping")
    cur.execute("CREATE DATABASE shipping")
    cur.execute("USE shipping")
    cur.execute("CREATE TABLE shipment_records (id int AUTO_INCREMENT PRIMARY KEY, "
                "status enum('PENDING','SHIPPED') NOT NULL DEFAULT 'PENDING', "
                "shipmentFile varchar(191) NULL)")
    cur.execute("INSERT INTO shipment_records (status) VALUES ('SHIPPED'), ('PENDING')")
    try:
        cur.execute("ALTER TABLE shipment_records ADD COLUMN shipmentFile varchar(191) NULL")
    except pymysql.MySQLError as e:
        print("MariaDB shipping: the Prisma migration fails: %s" % (e.args,))
    c.close()


def write_inventory(state, pg, my):
    inv = {
        "dbops_databases": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "dbops_backup_dir": str(Path(state) / "backups" / "{{ inventory_hostname }}"),
                     "dbops_report_dir": str(REPORTS), "dbops_preflight_min_free_mb": 10},
            "hosts": {
                "tdp_postgres": {
                    "dbops_engine": "postgresql", "dbops_login_host": pg["login_host"],
                    "dbops_login_port": pg["login_port"], "dbops_login_user": pg["login_user"],
                    "dbops_login_password": pg["login_password"], "dbops_database": "tdp",
                    "dbops_enums": [{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]}],
                },
                "shipping_mariadb": {
                    "dbops_engine": "mysql", "dbops_login_host": my["login_host"],
                    "dbops_login_port": my["login_port"], "dbops_login_user": my["login_user"],
                    "dbops_login_password": my["login_password"], "dbops_database": "shipping",
                    "dbops_columns": [{"table": "shipment_records", "column": "shipmentFile",
                                       "type": "varchar(191)", "nullable": True}],
                    "dbops_enums": [{"table": "shipment_records", "column": "status", "values": ["DELIVERED"]}],
                },
            },
        }
    }
    path = Path(state) / "inventory.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(inv, f, indent=2)
    return path


def playbook(inventory, *flags):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="False",
               ANSIBLE_DISPLAY_SKIPPED_HOSTS="False")
    cmd = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory),
           str(ROOT / "playbooks" / "maintenance.yml"), *flags]
    print("$ ansible-playbook -i inventory.json playbooks/maintenance.yml %s" % " ".join(flags), flush=True)
    return subprocess.run(cmd, env=env, check=True)


def show(pg, my):
    banner("Result")
    with psycopg.connect(host=pg["login_host"], port=pg["login_port"], user=pg["login_user"],
                         password=pg["login_password"], dbname="tdp", autocommit=True) as c:
        labels = [r[0] for r in c.execute('SELECT unnest(enum_range(NULL::"CredentialType"))').fetchall()]
        print('PostgreSQL tdp: "CredentialType" = %s' % labels)
        c.execute('''INSERT INTO "ExternalCredential" (platform, type) VALUES ('github', 'PERSONAL_ACCESS_TOKEN')''')
        print("PostgreSQL tdp: saving a GitHub credential now works")
    c = pymysql.connect(host=my["login_host"], port=my["login_port"], user=my["login_user"],
                        password=my["login_password"], database="shipping")
    cur = c.cursor()
    cur.execute("SHOW CREATE TABLE shipment_records")
    print("MariaDB shipping:\n" + cur.fetchone()[1])
    c.close()


def main():
    state = tempfile.mkdtemp(prefix="dbops-demo-")
    try:
        banner("Starting PostgreSQL 15 and MariaDB 10.11 on loopback (state in %s)" % state)
        info = harness.start(state, only=["pg15", "mariadb"])
        pg, my = info["pg15"], info["mariadb"]
        seed(pg, my)
        inventory = write_inventory(state, pg, my)
        banner("1. Check mode: what would run (nothing changes, no backup)")
        playbook(inventory, "--check", "--diff")
        banner("2. The fix: plan, backup, fix, verify (canary host first)")
        playbook(inventory, "--diff")
        banner("3. Again: nothing left to do (changed=0, no new backup)")
        playbook(inventory)
        show(pg, my)
        backups = sorted(p.name for p in (Path(state) / "backups").glob("*/*.manifest.json"))
        print("Backups taken (one per host, by run 2 only): %s" % ", ".join(backups))
        print("Fleet reports (one per run): %s" % ", ".join(
            str(p) for p in sorted(REPORTS.glob("*/report.html"))[-3:]))
    finally:
        banner("Stopping the servers")
        harness.stop(state)


if __name__ == "__main__":
    main()
