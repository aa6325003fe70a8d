"""db_backup attacked, through ansible-playbook against the real servers (issue 10 items 4, 8, 9, 10, 11, 15).

* a shared (world-writable, sticky) dest where another user plants symlinks at the names the run uses;
* unsafe dests (world-writable without the sticky bit, owned by another user, a dangling symlink);
* the modes of everything holding data while it exists;
* a MySQL password that tries to add lines to the option file;
* dump tools that stall (the watchdog) and a full file system under a SQLite backup.

Nothing here waits on a clock: fake tools wait for a flag file the test writes after the event it waits for.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import pytest

BACKUP = "dbops.maintenance.db_backup"
STATE_CHECK = "dbops.maintenance.state_check"
GATE_LIMIT = 1200   # iterations of 0.1 s a gated fake tool waits for its flag at most (a broken test ends)


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def make_tool_dir(base, scripts, links=()):
    d = os.path.join(str(base), "tools-%s" % secrets.token_hex(3))
    os.mkdir(d)
    for name, target in links:
        os.symlink(target, os.path.join(d, name))
    for name, text in scripts.items():
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write("#!/bin/bash\n" + text)
        os.chmod(path, 0o755)
    return d


def gate(flag):
    """bash lines that wait until `flag` exists (written by the test after the event it waits for)."""
    return 'n=0; while [ ! -e %s ] && [ $n -lt %d ]; do sleep 0.1; n=$((n+1)); done\n' % (flag, GATE_LIMIT)


def as_nobody(*argv):
    """Run argv as the unprivileged user nobody (the attacker); returns the CompletedProcess."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] + list(argv),
                          capture_output=True, text=True, check=False)


@pytest.fixture
def shared_root():
    """A directory that the user nobody can reach (pytest's tmp_path is 0700), removed afterwards."""
    d = tempfile.mkdtemp(prefix="dbops-adv-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def seed_sqlite(path, rows=300, blob=64):
    import sqlite3  # pylint: disable=import-outside-toplevel
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, os.urandom(blob)) for i in range(rows)])
    conn.commit()
    conn.close()


def snapshot_of(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        return (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


def entries(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# --------------------------------------------------------------------------
# item 9: a shared dest with planted symlinks
# --------------------------------------------------------------------------

class Planter(threading.Thread):
    """The attacker (as nobody): waits for the run's first entry in dest, then plants symlinks at every name the
    run could use next (the old code's predictable names: <tmp>.progress.json(.new), <tmp>, <tmp>.raw, and names
    inside a new private directory) pointing at a root-owned file and at the attacker's own file; then opens the
    gate of the fake compressor."""

    def __init__(self, dest, label, victim, own, flag):
        super().__init__(daemon=True)
        self.dest, self.label, self.victim, self.own, self.flag = dest, label, victim, own, flag
        self.planted, self.refused, self.seen = [], [], []
        self.stop = threading.Event()

    def plant(self, path, target):
        r = as_nobody("ln", "-s", target, path)
        (self.planted if r.returncode == 0 else self.refused).append(path)

    def run(self):
        try:
            while not self.stop.is_set():
                ours = [n for n in os.listdir(self.dest) if n.startswith(".dbops-tmp-")]
                if ours:
                    self.seen = ours
                    break
                time.sleep(0.01)  # polling for an event; the compressor waits for the flag meanwhile
            for name in self.seen:
                full = os.path.join(self.dest, name)
                base = full[:-len(".raw")] if name.endswith(".raw") else full
                if os.path.isdir(full):  # a private directory: try inside it too
                    for inner in ("progress.json", "x.raw", "manifest.json"):
                        self.plant(os.path.join(full, inner), self.victim)
                    # and the old names, for every second around now
                    prefix = name.rsplit("-", 1)[0]
                    now = time.time()
                    for delta in range(-5, 2):
                        ts = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + delta))
                        base = os.path.join(self.dest, "%s-%s-%s.sqlite3.gz" % (prefix, self.label, ts))
                        for suffix in (".progress.json", ".progress.json.new", ".raw"):
                            self.plant(base + suffix, self.victim)
                else:
                    for suffix in (".progress.json", ".progress.json.new"):
                        self.plant(base + suffix, self.victim)
                    self.plant(base + ".manifest.json", self.own)
        finally:
            with open(self.flag, "w") as f:
                f.write("go")


def test_symlinks_planted_in_a_shared_sticky_dest_are_never_followed(ansible, shared_root, tmp_path):
    dest = os.path.join(shared_root, "shared")
    os.mkdir(dest)
    os.chmod(dest, 0o1777)  # like /tmp: anyone may create entries, only the owner may remove them
    victim = os.path.join(shared_root, "root-owned.conf")
    with open(victim, "w") as f:
        f.write("precious root-owned content\n")
    os.chmod(victim, 0o644)
    attacker_dir = os.path.join(shared_root, "attacker")
    os.mkdir(attacker_dir)
    os.chown(attacker_dir, 65534, 65534)
    own = os.path.join(attacker_dir, "mine.db")
    assert as_nobody("sh", "-c", "echo attacker > %s && chmod 666 %s" % (own, own)).returncode == 0
    before = {victim: snapshot_of(victim), own: snapshot_of(own)}

    db = str(tmp_path / "app.sqlite3")
    seed_sqlite(db)
    flag = str(tmp_path / "go")
    tools = make_tool_dir(tmp_path, {"gzip": 'if [ "$1" = --version ]; then exec /usr/bin/gzip --version; fi\n'
                                             + gate(flag) + 'exec /usr/bin/gzip "$@"\n'})
    planter = Planter(dest, "app", victim, own, flag)
    planter.start()
    try:
        r = ansible.run(BACKUP, dict(engine="sqlite", database=db, dest=dest, label="app", tool_path=tools,
                                     verify="restore"))
    finally:
        planter.stop.set()
        planter.join(30)
    assert planter.seen, "the run's temporary entry never appeared in dest"
    assert planter.planted, "the attacker could not plant anything (the test proves nothing)"
    assert {victim: snapshot_of(victim), own: snapshot_of(own)} == before, "a planted symlink was followed"
    if r.failed:  # refused clearly is acceptable, a traceback or a write through a link is not
        assert "appeared at" in r["msg"] or "symbolic link" in r["msg"], r["msg"]
    else:
        st = os.lstat(r["path"])
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
        mst = os.lstat(r["manifest_path"])
        assert stat.S_ISREG(mst.st_mode) and stat.S_IMODE(mst.st_mode) == 0o600
    # nothing of the run is left but the backup and its manifest (the attacker's links stay, they are his)
    ours = [n for n in entries(dest) if os.lstat(os.path.join(dest, n)).st_uid == os.geteuid()]
    kept = [] if r.failed else [os.path.basename(r["path"]), os.path.basename(r["manifest_path"])]
    assert sorted(ours) == sorted(kept)


def test_a_symlink_planted_at_the_final_name_is_not_replaced_nor_followed(ansible, shared_root, tmp_path):
    dest = os.path.join(shared_root, "shared")
    os.mkdir(dest)
    os.chmod(dest, 0o1777)
    victim = os.path.join(shared_root, "root-owned.conf")
    with open(victim, "w") as f:
        f.write("precious\n")
    before = snapshot_of(victim)
    db = str(tmp_path / "app.sqlite3")
    seed_sqlite(db, rows=20)
    flag = str(tmp_path / "go")
    # the compressor runs after the final name was chosen: the attacker plants it then (name from the work dir)
    tools = make_tool_dir(tmp_path, {"gzip": 'if [ "$1" = --version ]; then exec /usr/bin/gzip --version; fi\n'
                                             + gate(flag) + 'exec /usr/bin/gzip "$@"\n'})
    done = threading.Event()

    def attacker():
        while not done.is_set():
            work = [n for n in entries(dest) if n.startswith(".dbops-tmp-")]
            if work:
                break
            time.sleep(0.01)
        now = time.time()
        for delta in range(-5, 2):
            ts = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + delta))
            for name in ("app-%s.sqlite3.gz" % ts, "app-%s.sqlite3.gz.manifest.json" % ts):
                as_nobody("ln", "-s", victim, os.path.join(dest, name))
        with open(flag, "w") as f:
            f.write("go")
    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    try:
        r = ansible.run(BACKUP, dict(engine="sqlite", database=db, dest=dest, label="app", tool_path=tools))
    finally:
        done.set()
        t.join(30)
    assert snapshot_of(victim) == before
    assert r.failed and "appeared at" in r["msg"] and "Nothing was overwritten" in r["msg"], r.get("msg")
    # the links are still the attacker's links (not replaced), and nothing of the run is left
    links = [n for n in entries(dest) if os.path.islink(os.path.join(dest, n))]
    assert links and all(os.readlink(os.path.join(dest, n)) == victim for n in links)
    assert [n for n in entries(dest) if not os.path.islink(os.path.join(dest, n))] == []


# --------------------------------------------------------------------------
# item 9 and 15: unsafe or broken dests are refused clearly, in check mode too
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["world_writable", "other_owner", "dangling_symlink"])
def test_unsafe_dest_is_refused_with_a_clear_message(ansible, sqlite_db, shared_root, case):
    seed_sqlite(sqlite_db.name, rows=5)
    dest = os.path.join(shared_root, "dest")
    if case == "dangling_symlink":
        os.symlink(os.path.join(shared_root, "gone"), dest)
        want = "symbolic link to %s, which does not exist" % os.path.join(shared_root, "gone")
    else:
        os.mkdir(dest)
        if case == "world_writable":
            os.chmod(dest, 0o777)
            want = "writable by every user and has no sticky bit"
        else:
            os.chown(dest, 65534, 65534)
            os.chmod(dest, 0o755)
            want = "owned by nobody"
    for check in (True, False):
        r = ansible.run(BACKUP, dict(sqlite_db.params, dest=dest), check=check)
        assert r.failed and want in r["msg"] and dest in r["msg"], r["msg"]
        assert "Errno" not in r["msg"] and "Traceback" not in r.get("module_stderr", "")
    # the same backup through state_check's backup option (a host that will change: a column is missing)
    r = ansible.run(STATE_CHECK, dict(sqlite_db.params, backup=dict(dest=dest, preflight=True),
                                      columns=[dict(table="t", column="added", type="text")]))
    assert r.failed and want in r["msg"] and dest in r["msg"], r["msg"]
    assert "Traceback" not in r.get("module_stderr", "")
    assert not os.path.exists(os.path.join(shared_root, "gone"))
    if case != "dangling_symlink":
        assert entries(dest) == []


@pytest.mark.parametrize("backup, words", [
    ({"dest": "DEST", "verify": "maybe"}, "verify"),
    ({"dest": "DEST", "keep_last": "many"}, "keep_last"),
    ({"verify": "list"}, "dest"),
    ({"dest": "DEST", "login_password": "hunter2-secret"}, "login_password"),
    ({"dest": "DEST", "keep_last": 0}, "keep_last must be 1 or more"),
])
def test_state_check_backup_option_refuses_bad_input_before_anything(ansible, sqlite_db, tmp_path, backup, words):
    """state_check's backup is db_backup's options: bad ones are refused by name, nothing checked or written."""
    seed_sqlite(sqlite_db.name, rows=5)
    dest = tmp_path / "backups"
    backup = dict((k, str(dest) if v == "DEST" else v) for k, v in backup.items())
    r = ansible.run(STATE_CHECK, dict(sqlite_db.params, backup=backup,
                                      columns=[dict(table="t", column="added", type="text")]))
    assert r.failed and words in r["msg"], r["msg"]
    assert "hunter2-secret" not in json.dumps(dict(r)) and "Traceback" not in r.get("module_stderr", "")
    assert not dest.exists() or list(dest.iterdir()) == [], list(dest.iterdir())


# --------------------------------------------------------------------------
# item 10: everything holding data is 0600 from its creation
# --------------------------------------------------------------------------

def test_the_uncompressed_sqlite_copy_and_every_temporary_file_are_private_while_they_exist(
        ansible, sqlite_db, tmp_path):
    seed_sqlite(sqlite_db.name)
    record = str(tmp_path / "modes.txt")
    # the compressor reads the uncompressed copy on its stdin: while it runs, it records the modes of that copy,
    # of its directory and of every file beside it (the temporary backup file is open already); the same
    # wrapper decompresses for the verification later, with the compressed backup on its stdin: not recorded
    script = ('if [ "$1" = --version ]; then exec /usr/bin/gzip --version; fi\n'
              'raw=$(readlink /proc/$$/fd/0); d=$(dirname "$raw")\n'
              'case "$raw" in *.raw) stat -c "%%n %%a %%U" "$raw" "$d" "$d"/* "$d"/.[!.]* 2>/dev/null > %s;; esac\n'
              'exec /usr/bin/gzip "$@"\n' % record)
    tools = make_tool_dir(tmp_path, {"gzip": script})
    dest = tmp_path / "bk"
    r = ansible.run(BACKUP, dict(sqlite_db.params, dest=str(dest), tool_path=tools), expect_failure=False)
    lines = [ln.rsplit(" ", 2) for ln in open(record).read().splitlines()]
    assert lines, "the compressor recorded nothing"
    raw = lines[0]
    assert raw[0].endswith(".raw") and raw[1] == "600", lines
    assert lines[1][1] == "700", "the private directory is %s" % lines[1]
    for name, mode, _owner in lines[2:]:
        assert mode == "600", "%s was %s while the backup ran" % (name, mode)
    for path in (r["path"], r["manifest_path"]):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(entries(dest)) == sorted([os.path.basename(r["path"]), os.path.basename(r["manifest_path"])])


# --------------------------------------------------------------------------
# item 15: a full SQLite dest names the dest and leaves nothing behind
# --------------------------------------------------------------------------

@pytest.fixture
def mountpoint(tmp_path):
    mounted = []

    def mount(options):
        d = tmp_path / ("mnt%d" % len(mounted))
        d.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.mark.parametrize("compression,rows", [("none", 4000), ("gzip", 1400)])
def test_full_sqlite_dest_names_the_dest_and_leaves_no_journal_or_temp(ansible, sqlite_db, mountpoint, compression,
                                                                       rows):
    # random bytes do not compress: 4000 rows (~4.5 MB) cannot even be copied into the 2 MB file system; 1400
    # rows (~1.5 MB) can, and then the compressed copy beside it does not fit
    seed_sqlite(sqlite_db.name, rows=rows, blob=1024)
    small = mountpoint("size=2m")
    r = ansible.run(BACKUP, dict(sqlite_db.params, dest=str(small), compression=compression))
    assert r.failed and "No space left on the file system of %s" % small in r["msg"], r["msg"]
    assert "Traceback" not in r["msg"]
    assert entries(small) == [], "left behind: %s" % entries(small)


# --------------------------------------------------------------------------
# item 8: MySQL option file injection
# --------------------------------------------------------------------------

@pytest.fixture
def mysql_user(mysql_db):
    """A MariaDB user whose password holds a newline followed by an option line, allowed to dump mysql_db."""
    name = "dbops_nl_%s" % secrets.token_hex(3)
    password = 'x\nhost=evil.invalid\npassword=y\t"q\\#end\\'
    srv = mysql_db.server
    conn = srv.connect(None)
    try:
        cur = conn.cursor()
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        cur.execute("GRANT ALL ON `%s`.* TO %%s@'%%%%'" % mysql_db.name, (name,))
    finally:
        conn.close()
    yield name, password
    srv.execute(None, "DROP USER IF EXISTS %s@'%%'", (name,))


def test_mysql_password_with_a_newline_adds_no_line_to_the_option_file(ansible, mysql_db, mysql_user, tmp_path):
    name, password = mysql_user
    mysql_db.execute("CREATE TABLE t (id int PRIMARY KEY, v varchar(20))")
    mysql_db.execute("INSERT INTO t VALUES (1, 'from-the-right-host')")
    record = str(tmp_path / "optionfile.txt")
    # the dump tool copies the option file it is given (read during the run), then runs as usual
    tools = make_tool_dir(tmp_path, {"mariadb-dump": (
        'for a in "$@"; do case "$a" in --defaults-file=*) cat "${a#--defaults-file=}" > %s;; esac; done\n'
        'exec /usr/bin/mariadb-dump "$@"\n' % record)})
    args = dict(mysql_db.params, login_user=name, login_password=password, dest=str(tmp_path / "bk"),
                tool_path=tools, compression="none")
    r = ansible.run(BACKUP, args, unsafe_args=True)
    text = open(record).read()
    keys = [ln.split("=", 1)[0].strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("[", "!"))]
    assert sorted(keys) == sorted(["user", "password", "host", "protocol", "port"]), text.replace(password, "<pw>")
    assert [ln for ln in text.splitlines() if ln.startswith("host=")] == ['host="127.0.0.1"']
    assert not r.failed, r["msg"]
    # the tool authenticated with exactly this password (the escapes are read back as the characters)
    dump = open(r["path"], "rb").read()
    assert b"from-the-right-host" in dump
    assert password not in json.dumps(dict(r)) and password.split("\n")[1] not in json.dumps(dict(r))


def test_mysql_password_with_an_unwritable_control_character_is_refused_naming_the_option(
        ansible, mysql_db, mysql_user, tmp_path):
    name, _password = mysql_user
    password = "a\x01b-%s" % secrets.token_hex(4)
    conn = mysql_db.server.connect(None)
    try:
        conn.cursor().execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (name, password))
    finally:
        conn.close()
    dest = tmp_path / "bk"
    r = ansible.run(BACKUP, dict(mysql_db.params, login_user=name, login_password=password, dest=str(dest)),
                    unsafe_args=True)
    assert r.failed and "login_password contains a control character" in r["msg"], r["msg"]
    assert password not in r["msg"] and password[2:] not in r["msg"]
    assert entries(dest) == []


# --------------------------------------------------------------------------
# item 11: a dump tool that stalls is stopped by the watchdog
# --------------------------------------------------------------------------

def no_process_with(marker):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read():
                    return False
        except OSError:
            continue
    return True


@pytest.mark.parametrize("engine,fmt", [("postgresql", "custom"), ("postgresql", "directory"), ("mysql", "plain")])
def test_a_stalled_dump_is_stopped_named_and_leaves_nothing(ansible, servers, engine, fmt, tmp_path):
    from conftest import DB  # pylint: disable=import-outside-toplevel
    server = servers["pg16" if "pg16" in servers else "pg15"] if engine == "postgresql" else servers["mariadb"]
    db = DB(server, server.create_database())
    try:
        marker = "1000.%d" % secrets.randbelow(10 ** 6)  # a unique sleep: it must not survive the run
        if engine == "postgresql":
            real = server.info["bin_dir"]
            body = ('for a in "$@"; do case "$a" in --file=*) d="${a#--file=}"; mkdir -p "$d"; '
                    'printf toc > "$d/toc.dat";; esac; done\n'
                    'printf -- "-- a little\\n"\nsleep %s & wait\n' % marker)
            probe = ('if [ "$1" = --version ] || [ "$PGHOST" = /nonexistent-dbops-probe ]; then '
                     'exec %s/pg_dump "$@"; fi\n' % real)
            tools = make_tool_dir(tmp_path, {"pg_dump": probe + body},
                                  links=[(n, os.path.join(real, n)) for n in ("pg_restore", "psql")])
            tool = "pg_dump"
        else:
            tools = make_tool_dir(tmp_path, {"mariadb-dump": 'if [ "$1" = --version ]; then exec /usr/bin/mariadb-dump '
                                                             '--version; fi\nprintf -- "-- a little\\n"\n'
                                                             'sleep %s & wait\n' % marker})
            tool = "mariadb-dump"
        dest = tmp_path / "bk"
        args = dict(db.params, dest=str(dest), tool_path=tools, stall_timeout=2, format=fmt)
        r = ansible.run(BACKUP, args)
        assert r.failed, "the stalled dump was not stopped"
        msg = r["msg"]
        assert "%s made no progress for" % tool in msg, msg
        assert "server %s port %s, phase dump" % (server.info["login_host"], server.info["login_port"]) in msg
        assert "nothing was kept" in msg
        assert [p["status"] for p in r["processes"]][0] == "killed by signal SIGKILL"
        assert entries(dest) == []
        assert no_process_with(marker), "a process of the stalled pipeline is still running"
    finally:
        server.drop_database(db.name)


# --------------------------------------------------------------------------
# item 15: verify=restore as a user who cannot restore everything gives the cause in the message
# --------------------------------------------------------------------------

@pytest.mark.parametrize("can_create", [True, False])
def test_verify_restore_as_a_non_superuser_says_why_in_the_message(ansible, servers, tmp_path, can_create):
    server = servers["pg16" if "pg16" in servers else "pg15"]
    role = "dbops_nosu_%s" % secrets.token_hex(3)
    password = secrets.token_hex(12)
    dbname = server.create_database()
    server.execute(None, "CREATE ROLE %s LOGIN %s PASSWORD '%s'" % (role, "CREATEDB" if can_create else "", password))
    try:
        # a table owned by the admin (a superuser) with grants: the dump says ALTER ... OWNER TO the admin, which
        # a non-superuser cannot replay into the scratch copy
        server.execute(dbname, "CREATE TABLE t (id int PRIMARY KEY)")
        server.execute(dbname, "INSERT INTO t SELECT generate_series(1, 10)")
        server.execute(dbname, "GRANT SELECT ON t TO %s" % role)
        server.execute(dbname, "GRANT USAGE ON SCHEMA public TO %s" % role)
        args = dict(server.params(dbname), login_user=role, login_password=password, dest=str(tmp_path / "bk"),
                    verify="restore")
        r = ansible.run(BACKUP, args)
        assert r.failed
        msg = r["msg"]
        if can_create:
            # the server's reason (PostgreSQL 16: "must be able to SET ROLE", 15: "must be owner"/"member"), not
            # only pg_restore's last line ("Command was: ...")
            assert "ERROR:" in msg and ("must be" in msg or "permission denied" in msg), msg
        else:
            assert "could not create the scratch database" in msg and "permission denied" in msg, msg
        assert "verify=restore needs a login" in msg and "verify=list" in msg
        assert password not in msg
        assert entries(str(tmp_path / "bk")) == []
        left = server.query(None, "SELECT datname FROM pg_database WHERE datname LIKE 'dbops_scratch_verify_%%' AND "
                                  "pg_get_userbyid(datdba) = %s", [role])
        assert left == []
    finally:
        server.drop_database(dbname)
        for row in server.query(None, "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = %s", [role]):
            server.drop_database(row[0])
        server.execute(None, "DROP ROLE IF EXISTS %s" % role)


def test_a_stalled_restore_is_stopped_and_the_target_is_left_as_it_was(ansible, servers, tmp_path):
    """db_restore's side-copy restore runs under the same stall watchdog: a pg_restore that stops making progress
    is killed after stall_timeout, the side database is dropped, and the target keeps its rows."""
    from conftest import DB  # pylint: disable=import-outside-toplevel
    server = servers["pg16" if "pg16" in servers else "pg15"]
    db = DB(server, server.create_database())
    try:
        db.execute("CREATE TABLE keep (id int PRIMARY KEY)")
        db.execute("INSERT INTO keep SELECT generate_series(1, 50)")
        dest = tmp_path / "bk"
        dest.mkdir(mode=0o700)
        b = ansible.run(BACKUP, dict(db.params, dest=str(dest), format="custom"), expect_failure=False)
        db.execute("DELETE FROM keep WHERE id > 10")  # the target now differs from the backup
        marker = "1000.%d" % secrets.randbelow(10 ** 6)
        real = server.info["bin_dir"]
        stall = ('for a in "$@"; do case "$a" in --dbname=*) printf -- "-- a little\\n" >&2; sleep %s & wait; exit 1;; '
                 'esac; done\nexec %s/pg_restore "$@"\n' % (marker, real))
        tools = make_tool_dir(tmp_path, {"pg_restore": stall},
                              links=[(n, os.path.join(real, n)) for n in ("pg_dump", "psql")])
        args = dict(db.params, backup=b["manifest_path"], replace=True, tool_path=tools, stall_timeout=2)
        r = ansible.run("dbops.maintenance.db_restore", args)
        assert r.failed, "the stalled restore was not stopped"
        assert "pg_restore made no progress for" in r["msg"], r["msg"]
        assert "phase restore into dbops_restore_" in r["msg"], r["msg"]
        assert db.query("SELECT count(*) FROM keep") == [(10,)], "the target was touched"
        left = server.query(None, "SELECT datname FROM pg_database WHERE datname LIKE %s",
                            ["dbops_restore_%s%%" % db.name[:20]])
        assert left == [], left
        assert no_process_with(marker), "a process of the stalled pipeline is still running"
    finally:
        server.drop_database(db.name)
