"""The state directory API: start / stop / status of the servers and instances, servers.json.

Part of tests/harness/servers.py (its CLI and importable names); standard library only."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from .common import (
    HarnessError, INSTANCES_FILE, KINDS, LOCALHOST, PORT_RETRIES, PortInUse, SERVER_NAMES,
    START_TIMEOUT, STATE_FILE, _free_ports, _is_root, _locked, _log, _port_for, _read_password_file,
    _write_json_private, ensure_run_user)
from .mariadb import MariaDBServer
from .postgresql import PostgresServer


def make_server(name, state_dir, kind=None, address=LOCALHOST):
    """The server object of ``name``: a fixed name (pg15, pg16, mariadb on 127.0.0.1) or an
    instance of ``kind`` on ``address``; instances recorded in the state dir are looked up."""
    if kind is None and name not in SERVER_NAMES and state_dir and state_dir != "/":
        recorded = _load_instances(state_dir).get(name)
        if recorded:
            kind, address = recorded["kind"], recorded["address"]
    kind = kind or name
    if kind in ("pg15", "pg16"):
        return PostgresServer(name, state_dir, kind, address)
    if kind == "mariadb":
        return MariaDBServer(name, state_dir, kind, address)
    raise HarnessError(f"unknown server {name!r} (known: {', '.join(SERVER_NAMES)}, or an "
                       "instance NAME=KIND@ADDRESS started with --instances)")


def _server_of(name, state_dir, info=None):
    """make_server for a recorded server (its kind and address from servers.json if known)."""
    info = info or {}
    if info.get("kind"):
        return make_server(name, state_dir, info["kind"], info.get("login_host", LOCALHOST))
    return make_server(name, state_dir)


# --------------------------------------------------------------------------
# state dir API
# --------------------------------------------------------------------------

def _load_instances(state_dir):
    try:
        with open(os.path.join(state_dir, INSTANCES_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def _raw_info(state_dir):
    try:
        with open(os.path.join(state_dir, STATE_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def load_info(state_dir):
    """The servers.json of ``state_dir`` as a dict (empty if there is none).

    Servers started with a password file get ``login_password`` read from it.
    """
    info = _raw_info(state_dir)
    for entry in info.values():
        if entry.get("password_file") and "login_password" not in entry:
            with contextlib.suppress(OSError, HarnessError):
                entry["login_password"] = _read_password_file(entry["password_file"])
    return info


def _save_or_remove(path, data, write):
    """Write what is left (``write()``), or remove ``path`` when nothing is."""
    if data:
        write()
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _write_info(state_dir, current):
    """servers.json, without the passwords that live in a password file."""
    on_disk = {}
    for name, entry in current.items():
        entry = dict(entry)
        if entry.get("password_file"):
            entry.pop("login_password", None)
        on_disk[name] = entry
    _write_json_private(os.path.join(state_dir, STATE_FILE), on_disk)


def parse_instances(spec):
    """``"a=pg15@127.0.0.11,b=mariadb@127.0.0.21"`` (or a dict / list of such strings) ->
    {name: {"kind", "address"}}."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        items = [(n, v["kind"], v["address"]) if isinstance(v, dict) else (n, *v)
                 for n, v in spec.items()]
    else:
        if isinstance(spec, str):
            spec = [p.strip() for p in spec.split(",") if p.strip()]
        items = []
        for part in spec:
            name, sep, rest = part.partition("=")
            kind, sep2, address = rest.partition("@")
            if not (sep and sep2 and name and kind and address):
                raise HarnessError(f"bad instance {part!r}: expected NAME=KIND@ADDRESS "
                                   "(e.g. pg15a=pg15@127.0.0.11)")
            items.append((name.strip(), kind.strip(), address.strip()))
    out = {}
    for name, kind, address in items:
        if kind not in KINDS:
            raise HarnessError(f"instance {name}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if name in SERVER_NAMES or not name.replace("_", "").replace("-", "").isalnum():
            raise HarnessError(f"instance {name!r}: use a name of letters, digits, - and _ "
                               f"other than {', '.join(SERVER_NAMES)}")
        try:
            octets = [int(o) for o in address.split(".")]
        except ValueError:
            octets = []
        if len(octets) != 4 or octets[0] != 127 or not all(0 <= o <= 255 for o in octets):
            raise HarnessError(f"instance {name}: address {address!r} is not in 127.0.0.0/8")
        if name in out:
            raise HarnessError(f"instance {name} given twice")
        out[name] = {"kind": kind, "address": address}
    addresses = [(v["kind"] == "mariadb", v["address"]) for v in out.values()]
    if len(set(addresses)) != len(addresses):
        raise HarnessError("two instances of the same engine share an address: give each its own")
    return out


def _parse_only(only, state_dir=None):
    if not only:
        names = list(SERVER_NAMES)
        if state_dir:
            names += [n for n in _load_instances(state_dir) if n not in names]
        return names
    if isinstance(only, str):
        only = [n.strip() for n in only.split(",") if n.strip()]
    known = _load_instances(state_dir) if state_dir else {}
    for n in only:
        if n not in known:
            make_server(n, "/")  # validates the name
    return list(dict.fromkeys(only))


def _start_one(name, state_dir, port, timeout, kind=None, address=LOCALHOST, password_file=None):
    server = make_server(name, state_dir, kind, address)
    for attempt in range(1, PORT_RETRIES + 1):
        password = _read_password_file(password_file) if password_file else secrets.token_urlsafe(24)
        t0 = time.monotonic()
        try:
            info = server.start(port, password, timeout, password_file=password_file)
        except PortInUse:
            server.stop()
            if attempt == PORT_RETRIES:
                raise
            port = _free_ports(1, address)[0]
            _log(f"{name}: port taken meanwhile, retrying on {port}")
            continue
        except BaseException:
            with contextlib.suppress(Exception):
                server.stop()
            raise
        _log(f"{name}: {info['engine']} {info['version']} on {address}:{info['login_port']} "
             f"ready in {time.monotonic() - t0:.1f}s")
        return info
    raise AssertionError("unreachable")


def start(state_dir, only=None, timeout=START_TIMEOUT, instances=None, password_file=None):
    """Start (or reuse, if already running) the servers; returns the servers.json dict.

    ``only``: names among pg15, pg16, mariadb (127.0.0.1, free ports; default all three
    unless ``instances`` is given).  ``instances``: ``"NAME=KIND@ADDRESS,..."`` (or what
    ``parse_instances`` accepts), each on its own loopback address.  ``password_file``:
    a 0600 file with the password every server started here gets (default: a random one
    each, recorded in servers.json).

    Raises HarnessError if any server fails to start; the others stay running
    and recorded, so ``stop`` cleans up everything.
    """
    state_dir = os.path.abspath(state_dir)
    wanted = parse_instances(instances)
    names = _parse_only(only) if (only or not wanted) else []
    if password_file:
        password_file = os.path.abspath(password_file)
        _read_password_file(password_file)  # fail early: missing, empty or readable by others
    os.makedirs(state_dir, exist_ok=True)
    if _is_root():
        # dbopstest must traverse the state dir to reach its data dirs (no listing).
        os.chmod(state_dir, os.stat(state_dir).st_mode & 0o7777 | 0o111)
    with _locked(state_dir):
        if wanted:
            recorded = _load_instances(state_dir)
            for name, spec in wanted.items():
                old = recorded.get(name)
                if old and old != spec:
                    raise HarnessError(f"instance {name} is recorded as {old['kind']}@{old['address']} "
                                       f"in {state_dir}: stop it first")
            recorded.update(wanted)
            _write_json_private(os.path.join(state_dir, INSTANCES_FILE), recorded)
        placement = {n: (n, LOCALHOST) for n in names}
        placement.update({n: (v["kind"], v["address"]) for n, v in wanted.items()})
        current = load_info(state_dir)
        to_start = []
        for name, (kind, address) in placement.items():
            if name in current and make_server(name, state_dir, kind, address).alive(current[name]):
                _log(f"{name}: already running on {address}:{current[name]['login_port']}, reusing")
            else:
                to_start.append(name)
        if not to_start:
            return current
        if _is_root() and any(placement[n][0].startswith("pg") for n in to_start):
            ensure_run_user()
        for name in to_start:  # leftovers of an earlier run
            make_server(name, state_dir, *placement[name]).stop(current.pop(name, None))
        _write_info(state_dir, current)
        fixed = [n for n in to_start if n not in wanted]
        ports = dict(zip(fixed, _free_ports(len(fixed))))
        for name in to_start:
            if name in wanted:
                ports[name] = _port_for(*placement[name])
        errors = []
        with ThreadPoolExecutor(max_workers=len(to_start)) as pool:
            futures = {name: pool.submit(_start_one, name, state_dir, ports[name], timeout,
                                         placement[name][0], placement[name][1], password_file)
                       for name in to_start}
            for name, fut in futures.items():
                try:
                    current[name] = fut.result()
                except Exception as e:  # pylint: disable=broad-exception-caught
                    errors.append(f"{name}: {e}")
        _write_info(state_dir, current)
        if errors:
            raise HarnessError("failed to start:\n" + "\n\n".join(errors))
        return current


def stop(state_dir, only=None):
    """Stop the servers of ``state_dir`` (even half-started ones) and remove their data dirs.

    Without ``only``: every server and instance recorded there.
    """
    state_dir = os.path.abspath(state_dir)
    if not os.path.isdir(state_dir):
        return
    with _locked(state_dir):
        names = _parse_only(only, state_dir)
        current = load_info(state_dir)
        if not only:
            names += [n for n in current if n not in names]
        todo = [n for n in names if n in current or os.path.lexists(os.path.join(state_dir, n))]
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            for fut in [pool.submit(_server_of(n, state_dir, current.get(n)).stop, current.get(n))
                        for n in todo]:
                fut.result()
        for name in todo:
            current.pop(name, None)
            _log(f"{name}: stopped")
        instances = _load_instances(state_dir)
        for name in names:
            instances.pop(name, None)
        _save_or_remove(os.path.join(state_dir, INSTANCES_FILE), instances,
                        lambda: _write_json_private(os.path.join(state_dir, INSTANCES_FILE), instances))
        _save_or_remove(os.path.join(state_dir, STATE_FILE), current, lambda: _write_info(state_dir, current))
    if not current:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(state_dir, ".lock"))


def status(state_dir):
    """{name: {"running": bool, "engine", "login_port", "version"}} for the recorded servers."""
    state_dir = os.path.abspath(state_dir)
    out = {}
    for name, info in load_info(state_dir).items():
        out[name] = {
            "running": _server_of(name, state_dir, info).alive(info),
            "engine": info.get("engine"),
            "login_host": info.get("login_host"),
            "login_port": info.get("login_port"),
            "version": info.get("version"),
        }
    return out
