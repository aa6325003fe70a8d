# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checksums exactly as the tools compute them."""

from __future__ import annotations

import hashlib
import re
import zlib

_JAVA_LINES = re.compile(b'\r\n|\r|\n')


def sha256_hex(data):
    """Prisma: lowercase hex SHA-256 of migration.sql, zero-padded."""
    return hashlib.sha256(data).hexdigest()


def prisma_matches(data, stored):
    """Prisma's script_matches_checksum: also accepts the script with the other line endings, and the
    checksums that an old schema engine wrote without zero-padding each byte."""
    variants = (data, data.replace(b'\r\n', b'\n'), data.replace(b'\n', b'\r\n'))
    for v in variants:
        digest = hashlib.sha256(v).digest()
        if stored and len(stored) != 64:
            text = ''.join('%x' % b for b in digest)
        else:
            text = digest.hex()
        if text == stored:
            return True
    return False


def flyway_crc32(data):
    """Flyway's checksum of an SQL migration: CRC32 updated with the UTF-8 bytes of each line as Java's
    BufferedReader.readLine() returns it (without \\n, \\r or \\r\\n), a byte-order mark removed from the
    first line, and the result stored as a signed 32-bit integer."""
    text = data.decode('utf-8', errors='replace')
    if text.startswith('\ufeff'):
        text = text[1:]
    crc = 0
    for line in _JAVA_LINES.split(text.encode('utf-8')):
        crc = zlib.crc32(line, crc)
    crc &= 0xFFFFFFFF
    return crc - 0x100000000 if crc >= 0x80000000 else crc


def sha384(data):
    """sqlx: SHA-384 of the migration file, stored as 48 bytes."""
    return hashlib.sha384(data).digest()
