"""Request bodies sent with a ``Content-Encoding``: decoded here, bounded, or refused.

aiohttp's server could decode them itself, but it stores a decoding error in the request
stream, where it surfaces again after the answer was sent (a traceback per bad request).
Decoding in one pure function keeps every outcome an answer: the decoded body, 413 past the
size limit (a small gzip can unpack to gigabytes), 400 for bytes that are not what the
header says, and 415 for a coding relay does not know. relay stores and delivers the
decoded body, so the coding is never forwarded.
"""

from __future__ import annotations

import zlib

# gzip and deflate are what HTTP clients send; br and zstd would need libraries relay does
# not ship. x-gzip is the old name of gzip (RFC 9110 §8.4.1.3).
KNOWN = ("gzip", "x-gzip", "deflate", "identity")


class Undecodable(Exception):
    """The body is not what its Content-Encoding says; ``str()`` says which."""


class Unsupported(Exception):
    """A Content-Encoding relay does not decode."""


class TooLarge(Exception):
    """The decoded body is larger than the limit."""


def coding_of(header: str | None) -> str:
    """The one coding a Content-Encoding header names ('' for none or identity);
    Unsupported for anything else, stacked codings (``gzip, gzip``) included."""
    if header is None:
        return ""
    coding = header.strip().lower()
    if coding in ("", "identity"):
        return ""
    if coding not in KNOWN:
        raise Unsupported(header)
    return "gzip" if coding == "x-gzip" else coding


def decode(body: bytes, coding: str, limit: int) -> bytes:
    """The body with ``coding`` ('' , 'gzip' or 'deflate') undone, at most ``limit`` bytes."""
    if not coding:
        return body
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:  # deflate: properly zlib-wrapped, but some senders send the raw stream
        wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    out = bytearray()
    data = body
    try:
        while True:  # gzip allows several members one after another
            decompressor = zlib.decompressobj(wbits)
            out += decompressor.decompress(data, limit + 1 - len(out))
            if len(out) > limit or decompressor.unconsumed_tail:
                raise TooLarge()
            out += decompressor.flush()
            if not decompressor.eof:
                raise Undecodable(f"{coding} data ends early")
            data = decompressor.unused_data
            if not data or coding != "gzip":
                break
    except zlib.error as exc:
        raise Undecodable(f"not valid {coding} data") from exc
    if data:
        raise Undecodable(f"bytes after the end of the {coding} data")
    if len(out) > limit:
        raise TooLarge()
    return bytes(out)
