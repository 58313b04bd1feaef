"""Twilio: signed with the official SDK (twilio-python's RequestValidator), posted to the
real relay behind a configured public URL; and the vectors from Twilio's docs and tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from multidict import CIMultiDict
from twilio.request_validator import RequestValidator

from relay.verify import Inbound, Rejected
from relay.verify.twilio import TwilioSource
from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

TOKEN, SECONDARY = "12345-current-auth-token", "67890-secondary-auth-token"
PUBLIC = "https://hooks.example.com/in/demo"
FORM = [("MessageSid", "SM1"), ("From", "+14158675310"), ("Body", "hi & bye"), ("To", "+1800")]


def form_case(name: str, token: str, status: int, **kw: object) -> Case:
    params = dict(FORM)
    signature = RequestValidator(token).compute_signature(PUBLIC, params)
    body = urlencode(FORM).encode()
    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": f"idem-{name}",
    }
    return Case(name, headers, body, status, forwarded=status == 200, **kw)  # type: ignore[arg-type]


async def test_twilio_sdk_signatures_against_the_relay(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    source = {"verify": "twilio", "secret": TOKEN, "secrets": [SECONDARY], "public_url": PUBLIC}
    json_body = json.dumps({"property": "value", "boolean": True}).encode()
    digest = hashlib.sha256(json_body).hexdigest()
    json_url = f"{PUBLIC}?bodySHA256={digest}"
    json_signature = RequestValidator(TOKEN).compute_signature(json_url, {})
    json_headers = {"X-Twilio-Signature": json_signature, "Content-Type": "application/json"}
    tampered = form_case("tampered", TOKEN, 401)
    tampered.body = tampered.body.replace(b"bye", b"BYE")
    cases = [
        form_case("form", TOKEN, 200),
        form_case("rotated", SECONDARY, 200),
        form_case("wrong-token", "not-the-token", 401),
        tampered,
        Case("json", json_headers, json_body, 200, query=f"bodySHA256={digest}", forwarded=True),
        Case(
            "json-tampered",
            json_headers,
            json_body.replace(b"value", b"other"),
            401,
            query=f"bodySHA256={digest}",
        ),
        Case("unsigned", {"Content-Type": "application/json"}, json_body, 401),
    ]
    result = await run_cases(tmp_path, receiver, client, source, cases)
    keys = [key for key, _, _ in result.events()]
    assert keys == ["idem-form", "idem-rotated", None]
    assert json.loads(result.bodies["wrong-token"])["error"].startswith("signature does not match")


def _verify(url: str, body: bytes, signature: str, query: str = "") -> None:
    source = TwilioSource.model_validate(
        {"name": "t", "verify": "twilio", "secret": "12345", "public_url": url}
    )
    headers = CIMultiDict({"X-Twilio-Signature": signature})
    source.build_verifier().verify(Inbound("POST", url, headers, body, None, query), 0.0)


def test_twilio_published_vectors() -> None:
    # twilio.com/docs/usage/security ("Validating requests"): token 12345.
    url = "https://mycompany.com/myapp.php"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }
    _verify(url, urlencode(params).encode(), "GvWf1cFY/Q7PnoempGyD5oXAezc=", "foo=1&bar=2")
    # twilio-python tests/unit/test_request_validator.py: the same with +14158675309, and
    # the ':443' form of the URL, which Twilio's validators also accept.
    params.update({"Caller": "+14158675309", "From": "+14158675309"})
    body = urlencode(params).encode()
    _verify(url, body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "foo=1&bar=2")
    _verify(
        "https://mycompany.com:443/myapp.php", body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "foo=1&bar=2"
    )
    # The same test file: a JSON body and its bodySHA256.
    json_body = b'{"property": "value", "boolean": true}'
    digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert hashlib.sha256(json_body).hexdigest() == digest
    _verify(url, json_body, "a9nBmqA0ju/hNViExpshrM61xv4=", f"foo=1&bar=2&bodySHA256={digest}")
    # ... and repeated parameters, sorted and de-duplicated.
    dup = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678")]
    dup += [("Digits", "1234"), ("Digits", "1234")]
    _verify(url, urlencode(dup).encode(), "IK+Dwps556ElfBT0I3Rgjkr1wJU=", "foo=1&bar=2")


def test_twilio_rejects_a_signature_for_another_url() -> None:
    body = b"CallSid=CA1"
    signature = RequestValidator("12345").compute_signature(
        "https://a.example/x", {"CallSid": "CA1"}
    )
    with pytest.raises(Rejected, match="public_url"):
        _verify("https://b.example/x", body, signature)
