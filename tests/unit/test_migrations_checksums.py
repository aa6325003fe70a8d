"""Checksums of the migration tools, against values computed independently of our code."""

from __future__ import annotations

import hashlib
import subprocess

from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import checksums
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.alembic import order_topologically, read_script
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.flyway import display, version_key


def crc32_bitwise(data):
    """A from-the-definition CRC-32 (IEEE 802.3, reflected 0xEDB88320), independent of zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _bit in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def signed(v):
    return v - 2 ** 32 if v >= 2 ** 31 else v


def test_prisma_checksum_known_value():
    # prisma-engines' own test: render_checksum("hello")
    assert checksums.sha256_hex(b"hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    # line endings and the old non-zero-padded format are accepted, as Prisma accepts them
    assert checksums.prisma_matches(b"a\r\nb\r\n", checksums.sha256_hex(b"a\nb\n"))
    old = "".join("%x" % b for b in hashlib.sha256(b"x").digest())
    assert len(old) < 64 and checksums.prisma_matches(b"x", old)
    assert not checksums.prisma_matches(b"abc\n", checksums.sha256_hex(b"abc"))


def test_flyway_checksum_is_crc32_of_lines():
    # The CRC-32 check value: CRC32("123456789") = 0xCBF43926; Flyway ignores the line break.
    assert checksums.flyway_crc32(b"123456789\n") == signed(0xCBF43926) == -873187034
    assert checksums.flyway_crc32(b"123456789\r\n") == -873187034
    text = b"CREATE TABLE users (id int);\r\nCREATE TABLE x (id int);\n"
    assert checksums.flyway_crc32(text) == signed(crc32_bitwise(b"CREATE TABLE users (id int);CREATE TABLE x (id int);"))
    # a BOM is removed from the first line only
    assert checksums.flyway_crc32(b"\xef\xbb\xbfa\nb") == checksums.flyway_crc32(b"a\nb")
    assert checksums.flyway_crc32(b"a\n\xef\xbb\xbfb") != checksums.flyway_crc32(b"a\nb")
    assert checksums.flyway_crc32(b"") == 0


def test_sqlx_checksum_is_sha384(tmp_path):
    f = tmp_path / "1_init.sql"
    f.write_bytes(b"CREATE TABLE s1 (id int);\n")
    out = subprocess.run(["sha384sum", str(f)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert checksums.sha384(f.read_bytes()).hex() == out
    assert len(checksums.sha384(b"")) == 48


def test_flyway_versions():
    assert display("1_1") == "1.1" and display("001.10") == "1.10"
    assert version_key("1.1") == version_key("1.1.0") and version_key("1.10") > version_key("1.9")


def test_alembic_scripts_read_without_import(tmp_path):
    (tmp_path / "a.py").write_text("import nothing_here\nrevision = 'a'\ndown_revision = None\n")
    (tmp_path / "b.py").write_text("revision: str = 'b'\ndown_revision: str = 'a'\n")
    (tmp_path / "m.py").write_text("revision = 'm'\ndown_revision = ('b', 'c')\n")
    (tmp_path / "c.py").write_text("revision = 'c'\ndown_revision = 'a'\n")
    assert read_script(str(tmp_path / "a.py")) == ("a", ())
    assert read_script(str(tmp_path / "m.py")) == ("m", ("b", "c"))

    class L:  # pylint: disable=too-few-public-methods
        def __init__(self, i, downs):
            self.id, self.downs = i, downs
    order = [m.id for m in order_topologically([L("m", ("b", "c")), L("c", ("a",)), L("b", ("a",)), L("a", ())])]
    assert order[0] == "a" and order[-1] == "m"
