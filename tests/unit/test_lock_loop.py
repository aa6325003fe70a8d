"""engines/base.py with_lock_retries(): the one lock-retry loop, with a scripted adapter
(the real servers are in tests/integration/test_lock_retries.py), and engines/redact.py redact_query()."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.engines import base, redact


class FakeModule:
    def __init__(self, **params):
        p = dict(lock_retries=5, lock_timeout=0.1, lock_wait_total=600, login_password="s3cret", database="d")
        p.update(params)
        self.params = p
        self.check_mode = False


def blocker(pid, query="SELECT 1", held=1.0):
    return dict(pid=pid, user="u", state="idle in transaction", transaction_start="t%d" % pid, query=query,
                held_s=held, identity=[pid, "b", "t%d" % pid])


class Scripted(base.Adapter):
    """execute() follows `outcomes`; lock_blockers() returns `blockers[i]` for the i-th timeout;
    blockers_still_there() answers from `presence` (a list of answers, one per call)."""

    retry_base_delay = 0.001
    watch_interval = 0.001

    def __init__(self, outcomes, blockers=None, presence=None, **params):
        super().__init__(FakeModule(**params))
        self.outcomes = list(outcomes)
        self.blockers = list(blockers or [])
        self.presence = presence
        self.log = []
        self.timeouts = 0

    def execute(self, statement):
        self.log.append(("execute", statement))
        outcome = self.outcomes.pop(0)
        if outcome:
            self.timeouts += 1
            raise outcome

    def history_run_transaction(self, statements):
        self.execute("; ".join(statements))

    def lock_blockers(self):
        return self.blockers[self.timeouts - 1] if self.timeouts - 1 < len(self.blockers) else []

    def blockers_still_there(self, blockers):
        if self.presence is None:
            return None
        answer = self.presence.pop(0) if self.presence else []
        self.log.append(("watch", [b["pid"] for b in blockers], answer if answer is None else [b["pid"] for b in answer]))
        return answer


T = base.LockTimeout("canceling statement due to lock timeout")


def test_watches_the_blocker_and_requeues_only_when_it_is_gone():
    a1 = blocker(11)
    a = Scripted([T, None], blockers=[[a1]], presence=[[a1], [a1], [a1], []])
    a.apply([base.Step("ALTER 1")])
    assert a.queries == ["ALTER 1"]
    # Never executed again while the blocker was there: 4 watches, then the second execute.
    kinds = [e[0] for e in a.log]
    assert kinds == ["execute", "watch", "watch", "watch", "watch", "execute"], a.log
    assert len(a.attempts) == 1 and a.attempts[0]["requeued"] == "blockers gone"
    assert "identity" not in a.attempts[0]["blockers"][0]


def test_a_new_blocker_is_handled_the_same_way():
    a1, b1 = blocker(11), blocker(12)
    a = Scripted([T, T, None], blockers=[[a1], [b1]], presence=[[a1], [], [b1], []])
    a.apply([base.Step("ALTER 1")])
    assert [e[0] for e in a.log] == ["execute", "watch", "watch", "execute", "watch", "watch", "execute"]
    assert [[b["pid"] for b in x["blockers"]] for x in a.attempts] == [[11], [12]]


def test_unknown_blockers_fall_back_to_the_pause():
    a = Scripted([T, T, None], blockers=[[], []], presence=[])
    a.apply([base.Step("ALTER 1")])
    assert [x["requeued"] for x in a.attempts] == ["pause", "pause"]
    a = Scripted([T, None], blockers=[[blocker(1)]], presence=None)  # the engine cannot tell
    a.apply([base.Step("ALTER 1")])
    assert a.attempts[0]["requeued"] == "pause"


def test_blind_switch_of_the_bench_requeues_without_watching(monkeypatch):
    monkeypatch.setenv(base.BLIND_RETRY_ENV, "1")
    a1 = blocker(11)
    a = Scripted([T, None], blockers=[[a1]], presence=[[a1]] * 10)
    a.apply([base.Step("ALTER 1")])
    assert [e[0] for e in a.log] == ["execute", "execute"]


def test_lock_retries_ends_the_wait_and_names_every_blocker_seen():
    a1, b1 = blocker(11, "SELECT a /* job A */", 3.0), blocker(12, "SELECT b /* job B */", 1.5)
    a = Scripted([T, T, T], blockers=[[a1], [b1]], presence=[[], []], lock_retries=1)
    with pytest.raises(base.DbopsError) as e:
        a.apply([base.Step("ALTER 1")])
    msg = str(e.value)
    assert "tried 2 time(s)" in msg and "lock_retries=1 reached" in msg and "Nothing was changed" in msg
    assert "pid 11" in msg and "job A" in msg and "held the lock for at least 3.0 s" in msg
    assert "pid 12" in msg and "job B" in msg
    assert [b["pid"] for b in e.value.details["blockers"]] == [11, 12]
    assert a.queries == []


def test_lock_wait_total_ends_the_watch():
    a1 = blocker(11)
    a = Scripted([T], blockers=[[a1]], presence=[[a1]] * 100000, lock_wait_total=0.05, lock_retries=100)
    a.watch_interval = 0.005
    with pytest.raises(base.DbopsError, match=r"lock_wait_total=0.05s reached") as e:
        a.apply([base.Step("ALTER 1")])
    assert "pid 11" in str(e.value)
    assert [x[0] for x in a.log].count("execute") == 1


def test_lock_wait_total_ends_the_pauses():
    a = Scripted([T] * 1000, blockers=[], lock_wait_total=0.05, lock_retries=1000)
    a.retry_base_delay = 0.01
    with pytest.raises(base.DbopsError, match=r"lock_wait_total=0.05s reached"):
        a.apply([base.Step("ALTER 1")])
    assert a.timeouts < 20


def test_history_transaction_uses_the_same_loop():
    a1 = blocker(11)
    a = Scripted([T, None], blockers=[[a1]], presence=[[a1], []])
    a.history_apply(["INSERT 1", "INSERT 2"])
    assert a.queries == ["INSERT 1", "INSERT 2"] and a.attempts[0]["requeued"] == "blockers gone"
    a = Scripted([T], blockers=[[a1]], presence=[], lock_retries=0)
    with pytest.raises(base.DbopsError, match="history table.*rolled back: nothing was changed"):
        a.history_apply(["INSERT 1"])


def test_unsupported_is_not_a_lock_timeout():
    a = Scripted([base.Unsupported("no")])
    with pytest.raises(base.DbopsError, match="refused"):
        a.apply([base.Step("ALTER 1")])
    assert a.attempts == []


@pytest.mark.parametrize("engine,text,shown,hidden", [
    ("postgresql", "ALTER ROLE x PASSWORD 'TopSecret'", "ALTER ROLE x PASSWORD $1", "TopSecret"),
    ("postgresql", "SELECT * FROM t WHERE a = 'sec' AND b = 12 /* job */", "/* job */", "sec'"),
    ("postgresql", "SELECT * FROM t WHERE a = 'ok' AND b = 'TopSec", "SELECT * FROM t WHERE a =", "TopSec"),
    ("postgresql", "SELECT $tag$TopSecret$tag$", "SELECT", "TopSecret"),
    ("postgresql", "not sql at all 'TopSecret'", "not sql", "TopSecret"),
    ("mysql", "ALTER USER x IDENTIFIED BY 'TopSecret'", "ALTER USER x IDENTIFIED BY ?", "TopSecret"),
    ("mysql", 'SELECT * FROM t WHERE a = "TopSecret" AND b = 0x1F', "SELECT * FROM t WHERE a = ? AND b = ?", "TopSecret"),
    ("mysql", "SELECT 'TopSec", "SELECT", "TopSec"),
    ("sqlite", "SELECT 'TopSecret'", "SELECT", "TopSecret"),
])
def test_redact_query(engine, text, shown, hidden):
    out = redact.redact_query(text, engine)
    assert shown in out and hidden not in out, out


def test_redact_query_cuts_to_length():
    out = redact.redact_query("SELECT " + ", ".join("c%d" % i for i in range(500)) + " FROM t", "postgresql")
    assert len(out) <= redact.BLOCKER_QUERY_MAX and out.endswith("...")
    assert redact.redact_query(None, "postgresql") is None


# --- engines/postgresql/locks.py: which lock a statement asks for (blockers found after a timeout) ----------
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql import locks  # noqa: E402


@pytest.mark.parametrize("statement, expected", [
    ('ALTER TYPE "CredentialType" ADD VALUE \'PAT\'', [("type", '"CredentialType"', locks.EXCLUSIVE)]),
    ("ALTER TABLE app.orders ADD COLUMN note text", [("relation", '"app"."orders"', locks.ACCESS_EXCLUSIVE)]),
    ("ALTER TABLE orders VALIDATE CONSTRAINT c", [("relation", '"orders"', locks.SHARE_UPDATE_EXCLUSIVE)]),
    ("ALTER TABLE orders VALIDATE CONSTRAINT c, ADD COLUMN x int",
     [("relation", '"orders"', locks.ACCESS_EXCLUSIVE)]),
    ("ALTER TABLE orders ADD CONSTRAINT f FOREIGN KEY (u) REFERENCES users (id) NOT VALID",
     [("relation", '"orders"', locks.SHARE_ROW_EXCLUSIVE), ("relation", '"users"', locks.SHARE_ROW_EXCLUSIVE)]),
    ("CREATE INDEX CONCURRENTLY i ON orders (total)", [("relation", '"orders"', locks.SHARE_UPDATE_EXCLUSIVE)]),
    ("CREATE INDEX i ON orders (total)", [("relation", '"orders"', locks.SHARE)]),
    ('INSERT INTO "_prisma_migrations" (id) VALUES (1)', [("relation", '"_prisma_migrations"', locks.ROW_EXCLUSIVE)]),
    ('ALTER TABLE "we""ird" ADD COLUMN x int', [("relation", '"we""ird"', locks.ACCESS_EXCLUSIVE)]),
    ("SELECT 1; DROP TABLE orders", []),   # not one statement: unknown, never guessed
    ("CREATE TABLE t (id int)", []),       # a kind not in the table: unknown
    ("not sql at all", []),
])
def test_pg_lock_requests(statement, expected):
    assert locks.lock_requests(statement) == expected


def test_pg_conflict_table_is_symmetric_and_readers_only_block_access_exclusive():
    for a, conflicts in locks.CONFLICTS.items():
        for b in conflicts:
            assert a in locks.CONFLICTS[b], (a, b)
    assert locks.CONFLICTS[locks.ACCESS_SHARE] == (locks.ACCESS_EXCLUSIVE,)
    (_q, params), = locks.holder_queries("CREATE INDEX i ON orders (total)")
    assert "AccessShareLock" not in params["modes"] and "RowExclusiveLock" in params["modes"]


# --- engines/mysql/blockers.py: SHOW ENGINE INNODB STATUS's transaction list -------------------------------
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql import blockers as mysql_blockers  # noqa: E402

STATUS = """------------
TRANSACTIONS
------------
Trx id counter 67
LIST OF TRANSACTIONS FOR EACH SESSION:
---TRANSACTION (0x7faaa79c0680), ACTIVE 3 sec
0 lock struct(s), heap size 1128, 0 row lock(s)
MariaDB thread id 34, OS thread handle 140370915165888, query id 875 127.0.0.1 dbops_admin
Trx read view will not see trx with id >= 67, sees < 67
---TRANSACTION (0x7faaa79bfb80), not started
0 lock struct(s), heap size 1128, 0 row lock(s)
MariaDB thread id 35, OS thread handle 1, query id 876 127.0.0.1 dbops_admin
---TRANSACTION 421, ACTIVE (PREPARED) 12 sec starting index read
mysql tables in use 1, locked 1
MySQL thread id 9, OS thread handle 1, query id 1 localhost root updating
---TRANSACTION 422, ACTIVE 7 sec
--------
FILE I/O
--------
"""


def test_innodb_status_transactions_active_only_with_their_thread():
    # not started: no transaction; the last one names no thread (a background transaction): not listed
    assert mysql_blockers.innodb_status_transactions(STATUS) == {34: 3, 9: 12}
    assert mysql_blockers.innodb_status_transactions("") == {}


def test_same_transaction_within_one_second_of_start():
    a = dict(pid=5, transaction_start="2026-12-03 07:00:00")
    assert mysql_blockers._same_transaction(a, dict(pid=5, transaction_start="2026-12-03 07:00:01"))  # pylint: disable=protected-access
    assert not mysql_blockers._same_transaction(a, dict(pid=5, transaction_start="2026-12-03 07:00:03"))  # pylint: disable=protected-access
    assert not mysql_blockers._same_transaction(a, dict(pid=6, transaction_start="2026-12-03 07:00:00"))  # pylint: disable=protected-access
    assert not mysql_blockers._same_transaction(a, dict(pid=5, transaction_start=None))  # pylint: disable=protected-access
