#!/usr/bin/env bash
# Install everything this project needs on a fresh machine (Debian 12, Python 3.11):
#   - server packages from Debian (PostgreSQL 15, MariaDB 10.11) when run as root,
#   - a virtualenv in .venv with ansible-core, drivers, test and lint tools.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${DBOPS_VENV:-$here/.venv}"
py="${PYTHON:-python3}"

need_apt=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15 postgresql-client-15)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server mariadb-client)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server openssh-client)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v lz4 >/dev/null 2>&1 || need_apt+=(lz4)
# headless browser of the report test (tests/integration/test_report_html.py)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# ansible-test sanity's shellcheck test skips itself without it.
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
# node and npm for the knex and dbmate conformance tests (scripts/install-conformance-tools.sh).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# Rails' ActiveRecord (Debian, offline) with its three drivers: the oracle for the rails history rows.
ruby -e 'require "active_record"; require "sqlite3"; require "pg"; require "mysql2"' >/dev/null 2>&1 \
  || need_apt+=(ruby-activerecord ruby-sqlite3 ruby-pg ruby-mysql2)
# pt-online-schema-change for column_ensure method: online (tests/integration/test_online_ptosc.py).
command -v pt-online-schema-change >/dev/null 2>&1 || need_apt+=(percona-toolkit)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing Debian packages: ${need_apt[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "bootstrap: apt-get install ${need_apt[*]}"
  # Never let package scripts start services (the harness runs its own servers), but only for the
  # duration of this install: whatever /usr/sbin/policy-rc.d was before (or its absence) is put back.
  prc=/usr/sbin/policy-rc.d
  prc_saved=""
  if [ -e "$prc" ] || [ -L "$prc" ]; then
    prc_saved=$(mktemp "$prc.dbops-saved.XXXXXX")
    cp -a "$prc" "$prc_saved"
  fi
  restore_policy_rc_d() {
    if [ -n "$prc_saved" ]; then
      mv -f "$prc_saved" "$prc"
    else
      rm -f "$prc"
    fi
  }
  trap restore_policy_rc_d EXIT; trap "exit 130" INT; trap "exit 143" TERM
  printf '#!/bin/sh\nexit 101\n' > "$prc.dbops-tmp"; chmod +x "$prc.dbops-tmp"; mv -f "$prc.dbops-tmp" "$prc"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  restore_policy_rc_d
  trap - EXIT
fi

stamp="$venv/.dbops-requirements.sha256"
want=$(cat "$here/requirements.txt" "$here/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv"
  "$py" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: pip install -r requirements-dev.txt"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$here/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
# The oldest supported ansible-core (2.16), in a second venv, for scripts/test.sh's core-2.16 stage.
venv216="${DBOPS_VENV_216:-$here/.venv-2.16}"
stamp216="$venv216/.dbops-requirements.sha256"
want216=$(cat "$here/requirements.txt" "$here/requirements-ansible2.16.txt" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv216/bin/python" ]; then
  echo "bootstrap: creating $venv216 (ansible-core 2.16)"
  "$py" -m venv "$venv216"
fi
if [ "$(cat "$stamp216" 2>/dev/null)" != "$want216" ]; then
  echo "bootstrap: pip install -r requirements-ansible2.16.txt into $venv216"
  "$venv216/bin/python" -m pip install -q -r "$here/requirements-ansible2.16.txt"
  echo "$want216" > "$stamp216"
fi
# The version line without a pipe: `ansible --version | head -1` closes the pipe early and ansible
# then dies with a BrokenPipe traceback.
version=$("$venv/bin/ansible" --version 2>&1) || { echo "bootstrap: ansible --version failed:" >&2; echo "$version" >&2; exit 1; }
echo "bootstrap: ready (${version%%$'\n'*})"
case ":$PATH:" in
  *":$venv/bin:"*) ;;
  # molecule and ansible-test run ansible-config & co. from PATH: a bare .venv/bin/molecule fails without it.
  *) echo "bootstrap: the tools are in $venv/bin; for molecule and ansible-test put it on PATH: export PATH=\"$venv/bin:\$PATH\" (or use scripts/molecule.sh)" ;;
esac
