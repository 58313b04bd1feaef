"""What a delivery sends, shown on the event page: the request rebuilt with the code that
sends it (``relay.delivery.request_of``, with the destination's transforms and signing), its
secrets redacted, and the same request as a ``curl`` command.

The request is rebuilt, not recorded: storing every attempt's headers would cost a write per
attempt for a page seldom opened. It is what the destination's current configuration sends;
a secret is never shown. In the curl command a secret header reads an environment variable
(``$RELAY_H_X_API_KEY``), so the command reproduces the delivery once the operator supplies
it; relay's own signature, which only the secret can make, and the sender's credentials
forwarded with the request (its signature header: only the provider's secret makes one)
are left out, and the command says so.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass

from relay.delivery import SIGNATURE_HEADERS, Outgoing, request_of
from relay.records import Claim, EventPayload
from relay.sections import DestinationConfig
from relay.verify.base import REDACTED, SECRET_HEADER_PARTS


@dataclass(frozen=True)
class Shown:
    url: str
    headers: list[tuple[str, str]]  # secrets redacted
    body_mode: str
    body_size: int
    signed: bool
    curl: str


def shown(destination: DestinationConfig, event: EventPayload, claim: Claim, at: float) -> Shown:
    outgoing = Outgoing.of(destination)
    headers, body = request_of(event, claim, outgoing, at)
    configured = {
        name.lower(): secret.reference != "inline"
        for name, secret in (*destination.headers.set.items(), *destination.headers.add.items())
    }
    signed = outgoing.signing_key is not None
    visible: list[tuple[str, str]] = []
    options: list[str] = []
    senders: list[str] = []  # the sender's own credentials, forwarded: left out of curl
    for name, value in headers:
        low = name.lower()
        if signed and low in SIGNATURE_HEADERS:
            if low == "webhook-signature":
                visible.append((name, REDACTED))
                continue  # only the signing secret makes it: not in the command
            visible.append((name, value))
        elif low not in configured and _secret_name(low):
            visible.append((name, REDACTED))
            senders.append(name)
            continue
        elif configured.get(low) or _secret_name(low):  # from env:/file:, or named so
            visible.append((name, REDACTED))
            options.append(f'-H "{name}: ${env_name(name)}"')
            continue
        else:
            visible.append((name, value))
        options.append("-H " + shlex.quote(f"{name}: {value}"))
    encoded = base64.b64encode(body).decode()
    lines = [
        f"base64 -d <<'BODY' | curl -sS -X POST {shlex.quote(destination.url)} \\",
        *(f"  {option} \\" for option in options),
        "  --data-binary @-",
        *(encoded[i : i + 76] for i in range(0, len(encoded), 76)),
        "BODY",
    ]
    if signed:
        lines.insert(0, "# unsigned: relay's webhook-signature needs the destination's secret")
    if senders:
        lines.insert(
            0,
            f"# left out: {', '.join(senders)}, the sender's own (only the provider's secret "
            "makes a signature; a receiver that checks it must trust relay's instead)",
        )
    left_out = {n.lower() for n in senders} | SIGNATURE_HEADERS
    secrets = sorted(
        {env_name(n) for n, v in visible if v == REDACTED and n.lower() not in left_out}
    )
    if secrets:
        lines.insert(0, f"# set {', '.join(secrets)} to the secret header values first")
    return Shown(destination.url, visible, outgoing.body, len(body), signed, "\n".join(lines))


def _secret_name(lower: str) -> bool:
    return any(part in lower for part in SECRET_HEADER_PARTS)


def env_name(header: str) -> str:
    return "RELAY_H_" + re.sub(r"[^A-Z0-9]", "_", header.upper())
