# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection and safety options shared by every dbops.maintenance module.

The argument spec that matches these docs is in
plugins/module_utils/connection.py; keep the two in step.
"""

from __future__ import annotations


class ModuleDocFragment:
    # Connection options: every module.
    DOCUMENTATION = r'''
options:
  engine:
    description:
      - The database engine.
      - C(postgresql) uses psycopg 3, C(mysql) uses PyMySQL and covers MySQL 8 and MariaDB 10.5+,
        C(sqlite) uses the Python standard library.
    type: str
    choices: [postgresql, mysql, sqlite]
    required: true
  login_host:
    description:
      - Host name or IP address of the server.
      - For PostgreSQL, when neither O(login_host) nor O(login_unix_socket) is set, libpq's defaults
        apply (E(PGHOST), then the local socket).
      - Ignored for SQLite.
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the server. Defaults to E(PGPORT) or 5432 for PostgreSQL, 3306 for MySQL.
    type: int
    aliases: [port]
  login_user:
    description:
      - User to connect as. Defaults to E(PGUSER) or the OS user for PostgreSQL,
        and to the C(user) of C(~/.my.cnf) (or the OS user) for MySQL.
    type: str
    aliases: [login, user]
  login_password:
    description:
      - Password of O(login_user). Never logged, never put on a command line.
      - When unset, PostgreSQL uses E(PGPASSWORD) or libpq's password file (E(PGPASSFILE), C(~/.pgpass)),
        and MySQL uses the C(password) of C(~/.my.cnf) (see O(config_file)).
    type: str
    aliases: [password]
  login_unix_socket:
    description:
      - Path to the server's Unix socket (MySQL) or to the directory that holds it (PostgreSQL).
    type: path
    aliases: [unix_socket]
  config_file:
    description:
      - MySQL only. An option file read for C(user), C(password), C(host), C(port), C(socket) defaults
        (its C([client]) group). Ignored if it does not exist.
    type: path
    default: ~/.my.cnf
  database:
    description:
      - The database to work on. For SQLite, the path of the database file.
    type: str
    aliases: [db, login_db, name_of_database]
    required: true
  connect_timeout:
    description:
      - Seconds to wait for a connection to be made, including the server's greeting, the authentication and
        the session set-up (PostgreSQL C(connect_timeout); MySQL/MariaDB C(connect_timeout) for the TCP connect,
        C(read_timeout)/C(write_timeout) for the rest).
      - Also the bound of every later wait for the server. When a statement (or a commit) has had no answer for
        O(connect_timeout) seconds, the module checks through a fresh connection, itself bounded by O(connect_timeout),
        that the server is alive and still has the session; it checks again every O(connect_timeout) seconds while
        the statement runs. A server that does not answer that check (hung, or the network to it gone silent), or that
        no longer has the session, makes the module close the connection and fail, naming the server, its port, the
        phase and the statement. A long statement on a live server is not cut off by this; C(statement_timeout)
        limits that.
    type: int
    default: 10
  ssl_mode:
    description:
      - TLS mode. PostgreSQL takes libpq's values; for MySQL, C(disable) turns TLS off, C(require) uses
        TLS without checking the certificate, C(verify-ca) and C(verify-full) check it against O(ca_cert)
        (C(verify-full) also checks the host name).
      - Unset means the driver's default (libpq's E(PGSSLMODE), C(prefer); for MySQL, no TLS unless a certificate
        option is given).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - Path of the CA certificate(s) that signed the server's certificate.
    type: path
    aliases: [ssl_rootcert]
  client_cert:
    description:
      - Path of the client certificate, for certificate authentication.
    type: path
    aliases: [ssl_cert]
  client_key:
    description:
      - Path of the client certificate's private key.
    type: path
    aliases: [ssl_key]
requirements:
  - psycopg >= 3.1 (PostgreSQL), PyMySQL >= 1.0 (MySQL/MariaDB), on the host the module runs on.
notes:
  - All options above can be set once for every module of the collection with
    C(module_defaults) and the action group C(group/dbops.maintenance.all).
'''

    # Options of the modules that change a database.
    SAFETY = r'''
options:
  lock_timeout:
    description:
      - Seconds each DDL statement may wait in the lock queue for its table or type lock before it gives up
        (PostgreSQL C(lock_timeout), MySQL/MariaDB C(lock_wait_timeout), SQLite busy timeout).
      - A statement that waits for a lock makes every later query on that table queue behind it, so this
        is the longest the application's queries on that table can stall behind one queueing of the change.
        After a timeout the module does not queue again while the blocking sessions are still there
        (see O(lock_retries)), so each distinct blocker costs the application at most one such stall.
      - The default 0.5 s is what pgroll and GitLab's C(with_lock_retries) start with. It was chosen with
        bench/run_ddl_bench.py scenario (b), 0.5 s against 2 s (bench/README.md). Once a retry no longer
        costs a stall per pause, a shorter timeout only shortens each stall, and the statement still gets
        its lock as soon as the blockers are gone. With three application connections queued behind it, one
        stall of 0.5 s blocked them 6 to 7 percent of the time a plain ALTER TABLE did, one of 2 s 21 to 22 percent.
      - MySQL/MariaDB round this up to whole seconds (their C(lock_wait_timeout) is an integer, at least 1).
    type: float
    default: 0.5
  lock_retries:
    description:
      - How many times a statement that timed out waiting for a lock is queued again.
      - After a timeout the module watches the sessions that blocked it from a second connection
        (PostgreSQL C(pg_blocking_pids) and C(pg_stat_activity), a blocker being the same while its pid,
        backend start and transaction start are unchanged; MySQL/MariaDB the metadata-lock holders of
        C(performance_schema.metadata_locks) when performance_schema is on, else the open transactions of
        C(information_schema.INNODB_TRX), and then it queues again as soon as one of those ends). It polls
        about every 0.1 s without taking any lock and queues again as soon as they are gone. When the
        wait ended before the watch's first look (a short O(lock_timeout) on a loaded machine), PostgreSQL
        finds the blockers afterwards in C(pg_locks), as the sessions holding a lock on the statement's table
        or type in a mode that conflicts with the one it asks for, and whose transaction began before the
        statement (their C(seen_by) is C(pg_locks) in the result's C(attempts)); this is done for the
        modules' own statements and history writes, not for a statement inside a migration file. MariaDB
        without performance_schema reads C(INNODB_TRX) only when its cache proves fresh, else
        C(SHOW ENGINE INNODB STATUS) (C(seen_by) C(innodb_status)). When the blockers cannot be known (SQLite, or no blocker seen), it
        pauses instead (0.5 s, 1 s, 2 s, ... up to 8 s) before the next try.
      - The wait ends when the retries are used up or O(lock_wait_total) has passed, whichever comes first.
        The task then fails, nothing is changed, and the message names every blocker seen, how long each
        had held its transaction open, and what it was running, with every literal of its query replaced
        by a placeholder (C($1) or C(?)) and cut to 200 characters.
    type: int
    default: 5
  lock_wait_total:
    description:
      - The whole time, in seconds, the module may wait for the lock of one statement, across all its
        retries and the watching of blockers in between. Whichever of O(lock_retries) and this limit is
        reached first ends the wait. It is checked between tries, so the last try may add up to one
        O(lock_timeout).
    type: float
    default: 600
  statement_timeout:
    description:
      - Seconds any single statement may run (PostgreSQL C(statement_timeout), MariaDB C(max_statement_time),
        MySQL C(max_execution_time) for reads). Unset or C(0) means no limit. Not available for SQLite.
    type: float
  wait_for_lock:
    description:
      - Every module that changes a database first takes a maintenance lock on that database
        (PostgreSQL advisory lock, MySQL C(GET_LOCK), SQLite C(flock) on the file), so two runs on one
        database never interleave.
      - Seconds to wait for another run to release it. C(0) fails at once, naming who holds it.
    type: float
    default: 0
'''
