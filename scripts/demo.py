"""Driver of scripts/demo.sh: the two seed incidents on throwaway servers, fixed with playbooks/maintenance.yml.

    demo.py            seed, check mode, the fix, the idempotent re-run, the result; stops the servers
    demo.py --clean    removes what demo runs left: /tmp/dbops-demo-* (servers still running there are
                       stopped first: data, backups) and build/demo-reports/ (the fleet reports)

Incident 1 (PostgreSQL, database tdp): enum "CredentialType" lacks PERSONAL_ACCESS_TOKEN, every insert of a GitHub
credential fails with 22P02. Incident 2 (MariaDB, database shipping): the Prisma migration adding
shipment_records.shipmentFile fails with 1060, the column is already there. The fixes are those of
examples/fixes/credentialtype-enum.yml and examples/fixes/shipmentfile-column.yml (its column; the demo has no
Prisma migrations directory, so not its history resolution).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# DBOPS_DEMO_REPORTS: another reports directory (tests/repo runs --clean on its own); state dirs go to $TMPDIR or /tmp.
REPORTS = Path(os.environ.get("DBOPS_DEMO_REPORTS") or ROOT / "build" / "demo-reports")
FIXES = ROOT / "examples" / "fixes"
STATE_PREFIX = "dbops-demo-"
MARKER = ".dbops-demo"  # in every state dir this demo made: --clean removes only those
sys.path.insert(0, str(ROOT / "tests"))

from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position

# Packages scripts/bootstrap.sh may have installed; --clean lists them and leaves them installed.
DEBIAN_PACKAGES = ("postgresql-15 postgresql-client-15 mariadb-server mariadb-client sqlite3 rsync openssh-server "
                   "openssh-client zstd lz4 shellcheck nodejs npm ruby-activerecord ruby-sqlite3 ruby-pg ruby-mysql2")


def banner(text):
    print("\n\033[1m== %s ==\033[0m" % text, flush=True)


def seed(pg, my):
    import psycopg  # pylint: disable=import-outside-toplevel
    import pymysql  # pylint: disable=import-outside-toplevel
    banner("Seeding the two incidents")
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
            print("Incident 1, tdp_postgres (PostgreSQL tdp): saving a GitHub credential fails: %s (SQLSTATE %s)"
                  % (str(e).strip(), e.sqlstate))
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
        print("Incident 2, shipping_mariadb (MariaDB shipping): the Prisma migration adding shipmentFile fails: %s"
              % (e.args,))
    c.close()


def fix(name, key):
    """One key of an examples/fixes/ file (the demo runs the examples' own fix declarations)."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(FIXES / name, encoding="utf-8") as f:
        return yaml.safe_load(f)[key]


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
                    "dbops_enums": fix("credentialtype-enum.yml", "dbops_enums"),
                },
                "shipping_mariadb": {
                    "dbops_engine": "mysql", "dbops_login_host": my["login_host"],
                    "dbops_login_port": my["login_port"], "dbops_login_user": my["login_user"],
                    "dbops_login_password": my["login_password"], "dbops_database": "shipping",
                    "dbops_columns": fix("shipmentfile-column.yml", "dbops_columns"),
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
    import psycopg  # pylint: disable=import-outside-toplevel
    import pymysql  # pylint: disable=import-outside-toplevel
    banner("Result")
    with psycopg.connect(host=pg["login_host"], port=pg["login_port"], user=pg["login_user"],
                         password=pg["login_password"], dbname="tdp", autocommit=True) as c:
        labels = [r[0] for r in c.execute('SELECT unnest(enum_range(NULL::"CredentialType"))').fetchall()]
        print('Incident 1 fixed, tdp_postgres: "CredentialType" = %s' % labels)
        c.execute('''INSERT INTO "ExternalCredential" (platform, type) VALUES ('github', 'PERSONAL_ACCESS_TOKEN')''')
        print("Incident 1 fixed, tdp_postgres: saving a GitHub credential now works")
    c = pymysql.connect(host=my["login_host"], port=my["login_port"], user=my["login_user"],
                        password=my["login_password"], database="shipping")
    cur = c.cursor()
    cur.execute("SHOW CREATE TABLE shipment_records")
    print("Incident 2 fixed, shipping_mariadb: shipmentFile is there with the wanted definition (column_ensure "
          "accepted it, changed=false), so the migration can be marked applied:\n" + cur.fetchone()[1])
    c.close()


def _demo_running(marker):
    """True when the demo that wrote ``marker`` (its pid) is still running."""
    try:
        with open(marker, encoding="ascii") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"demo.py" in f.read()
    except OSError:
        return False


def clean():
    """Remove what earlier demo runs left (servers still running there are stopped first)."""
    removed = []
    for state in sorted(glob.glob(os.path.join(tempfile.gettempdir(), STATE_PREFIX + "*"))):
        marker = os.path.join(state, MARKER)
        if not os.path.isfile(marker) or os.stat(state).st_uid != os.getuid():
            continue
        if _demo_running(marker):
            print("demo --clean: %s belongs to a demo that is still running: left alone" % state)
            continue
        harness.stop(state)
        shutil.rmtree(state)
        removed.append(state + " (servers, data, backups)")
    if REPORTS.exists():
        shutil.rmtree(REPORTS)
        removed.append(str(REPORTS) + " (fleet reports)")
    print("demo --clean: removed %s" % ("; ".join(removed) if removed else "nothing (no demo left anything)"))
    print("demo --clean: left in place (README, 'What the demo and the tests create'): the Debian packages "
          "bootstrap.sh installed when missing (%s), .venv, the system user dbopstest (userdel dbopstest)"
          % DEBIAN_PACKAGES)


def main():
    if sys.argv[1:] == ["--clean"]:
        clean()
        return
    if sys.argv[1:]:
        sys.exit("usage: scripts/demo.sh [--clean]")
    state = tempfile.mkdtemp(prefix=STATE_PREFIX)
    Path(state, MARKER).write_text("%d\n" % os.getpid(), encoding="ascii")
    inventory = None
    try:
        banner("Starting PostgreSQL 15 and MariaDB 10.11 on loopback (state in %s)" % state)
        info = harness.start(state, only=["pg15", "mariadb"])
        pg, my = info["pg15"], info["mariadb"]
        seed(pg, my)
        inventory = write_inventory(state, pg, my)
        banner("1. Check mode: what would run (nothing changes, no backup)")
        playbook(inventory, "--check", "--diff")
        banner("2. The fix: plan, backup, fix, verify (canary host first): incident 1 on tdp_postgres "
               "(enum_add), incident 2 on shipping_mariadb (column_ensure)")
        playbook(inventory, "--diff")
        banner("3. Again: nothing left to do (changed=0, no new backup)")
        playbook(inventory)
        show(pg, my)
        backups = sorted(p.name for p in (Path(state) / "backups").glob("*/*.manifest.json"))
        print("Backups taken (by run 2 only, of the hosts it changed): %s" % ", ".join(backups))
        print("Fleet reports (one per run): %s" % ", ".join(
            str(p) for p in sorted(REPORTS.glob("*/report.html"))[-3:]))
    finally:
        banner("Stopping the servers")
        harness.stop(state)
        if inventory is not None:
            inventory.unlink(missing_ok=True)  # it holds the (now useless) passwords: nothing of it is left
        print("Left for you to look at: the backups in %s/backups, the reports in %s. "
              "`bash scripts/demo.sh --clean` removes them." % (state, REPORTS))


if __name__ == "__main__":
    main()
