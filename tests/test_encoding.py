"""relay.encoding: Content-Encoding rules as a table (pure functions, no server)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from relay import encoding

BODY = b'{"type": "invoice.paid"}' * 10


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (None, ""),
        ("", ""),
        ("identity", ""),
        (" GZIP ", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate", "deflate"),
    ],
)
def test_known_codings(header: str | None, coding: str) -> None:
    assert encoding.coding_of(header) == coding


@pytest.mark.parametrize("header", ["xyz", "gzip, gzip", "br", "zstd", "gzip;q=1", "\udce9"])
def test_other_codings_are_unsupported(header: str) -> None:
    with pytest.raises(encoding.Unsupported):
        encoding.coding_of(header)


@pytest.mark.parametrize(
    ("coding", "data"),
    [
        ("", BODY),
        ("gzip", gzip.compress(BODY)),
        ("gzip", gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])),  # two members
        ("deflate", zlib.compress(BODY)),  # zlib-wrapped, as RFC 9110 says
        ("deflate", zlib.compress(BODY)[2:-4]),  # the raw stream some senders send
    ],
)
def test_decode(coding: str, data: bytes) -> None:
    assert encoding.decode(data, coding, 10_000) == BODY


@pytest.mark.parametrize(
    ("coding", "data"),
    [
        ("gzip", b"not-gzip!"),
        ("gzip", gzip.compress(BODY)[:-4]),  # cut short
        ("gzip", gzip.compress(BODY) + b"junk"),
        ("deflate", b"\x08\x00garbage"),
        ("gzip", b""),
    ],
)
def test_undecodable(coding: str, data: bytes) -> None:
    with pytest.raises(encoding.Undecodable):
        encoding.decode(data, coding, 10_000)


def test_limit_counts_decoded_bytes() -> None:
    bomb = gzip.compress(b"0" * 10_000_000)
    with pytest.raises(encoding.TooLarge):
        encoding.decode(bomb, "gzip", 1_000_000)
    assert len(encoding.decode(gzip.compress(b"0" * 1000), "gzip", 1000)) == 1000
    with pytest.raises(encoding.TooLarge):
        encoding.decode(gzip.compress(b"0" * 1001), "gzip", 1000)
