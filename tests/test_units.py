"""Pure pieces: extraction rules, config value types, ids, the generic HMAC verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from multidict import CIMultiDict

from relay.configtypes import Secret, parse_duration, parse_size, resolve_secret
from relay.extract import Parsed, extract, resolve_pointer
from relay.ids import new_event_id
from relay.verify import Inbound, Rejected
from relay.verify.hmac import HmacSource


def test_json_pointer_follows_rfc6901() -> None:
    doc = {"a": {"b/c": [10, {"~d": "x"}]}, "": 1, "0": "zero"}
    assert resolve_pointer(doc, "/a/b~1c/0") == 10
    assert resolve_pointer(doc, "/a/b~1c/1/~0d") == "x"
    assert resolve_pointer(doc, "/0") == "zero"
    assert resolve_pointer(doc, "/a/b~1c/01") is None  # leading zeros are not indexes
    assert resolve_pointer(doc, "/a/missing") is None
    assert resolve_pointer(doc, "") == doc


def test_extract_rules() -> None:
    headers = CIMultiDict({"X-Request-Id": " abc "})
    parsed = Parsed(b'{"id": 42, "type": "a.b", "obj": {}, "flag": true}')
    assert extract("header:x-request-id", headers, parsed) == "abc"
    assert extract("json:/id", headers, parsed) == "42"
    assert extract("json:/type", headers, parsed) == "a.b"
    assert extract("json:/obj", headers, parsed) is None  # objects are not keys
    assert extract("json:/flag", headers, parsed) is None
    assert extract("none", headers, parsed) is None
    assert extract("json:/id", headers, Parsed(b"not json")) is None


def test_durations_and_sizes() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("10m") == 600
    assert parse_duration(3) == 3.0
    assert parse_size("1MiB") == 1024 * 1024
    assert parse_size(100) == 100
    for bad in ("soon", True, "-1s"):
        with pytest.raises(ValueError, match=r"duration|negative"):
            parse_duration(bad)


def test_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_UNIT_SECRET", "from-env")
    (tmp_path / "s").write_text("from-file\n")
    assert resolve_secret("env:RELAY_UNIT_SECRET").value == "from-env"
    assert resolve_secret(f"file:{tmp_path}/s").value == "from-file"
    inline = resolve_secret("inline-value")
    assert inline.value == "inline-value"
    assert "inline-value" not in repr(inline)
    assert "inline-value" not in inline.masked()
    assert isinstance(inline, Secret)


def test_event_ids_are_unique_and_time_sortable() -> None:
    ids = [new_event_id(1_700_000_000 + i) for i in range(50)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"evt_[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)


def _inbound(body: bytes, **headers: str) -> Inbound:
    return Inbound("POST", "http://x/in/s", CIMultiDict(headers), body, "127.0.0.1")


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix"),
    [("sha256", "hex", "sha256="), ("sha1", "base64", ""), ("sha512", "hex", "")],
)
def test_hmac_verifier_schemes(algorithm: str, encoding: str, prefix: str) -> None:
    source = HmacSource.model_validate(
        {
            "name": "s",
            "verify": "hmac",
            "secret": "old",
            "secrets": ["new"],
            "algorithm": algorithm,
            "encoding": encoding,
            "prefix": prefix,
            "header": "X-Sig",
        }
    )
    verifier = source.build_verifier()
    body = b'{"a": 1}'

    def signed(key: str) -> str:
        digest = hmac.new(key.encode(), body, getattr(hashlib, algorithm)).digest()
        text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
        return prefix + text

    verifier.verify(_inbound(body, **{"X-Sig": signed("old")}), 0)
    verifier.verify(_inbound(body, **{"X-Sig": signed("new")}), 0)  # rotation: either key
    for headers, reason in [
        ({"X-Sig": signed("other")}, "does not match"),
        ({}, "missing X-Sig"),
        ({"X-Sig": prefix + "zz\u00e9"}, "not valid"),
    ]:
        with pytest.raises(Rejected, match=reason):
            verifier.verify(_inbound(body, **headers), 0)
    with pytest.raises(Rejected):
        verifier.verify(_inbound(body + b" ", **{"X-Sig": signed("old")}), 0)
