"""HTTPS to internal services: a private CA, and a receiver that requires a client
certificate (mTLS). Certificates are made here, for 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import BODY_JSON, post, query, running, settings_for, wait_for


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(folder: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("relay test CA", ca_key, None, ca=True)
    _write(folder / "ca", ca, ca_key)
    for name, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(folder / name, _issue(f"relay-{name}", key, (ca.subject, ca_key), ip=ip), key)


async def test_mtls_receiver_gets_the_client_certificate(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    peers: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        cert = transport.get_extra_info("peercert")
        subject = dict(pair[0] for pair in cert["subject"])
        peers.append(subject["commonName"])
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    url = f"https://127.0.0.1:{port}/hook"
    tls = {
        "ca_file": str(tmp_path / "ca.pem"),
        "cert_file": str(tmp_path / "client.pem"),
        "key_file": str(tmp_path / "client.key"),
    }
    try:
        db = tmp_path / "relay.db"
        settings = settings_for(
            db,
            url,
            destinations=[
                {"name": "app", "url": url, "tls": tls},
                # The same receiver without a client certificate: refused at the handshake.
                {
                    "name": "anonymous",
                    "url": url,
                    "tls": {"ca_file": tls["ca_file"]},
                    "retry": {"max_attempts": 1},
                },
            ],
            routes=[{"source": "demo", "destinations": ["app", "anonymous"]}],
        )
        async with running(settings) as relay:
            status, _, _ = await post(client, relay.port, BODY_JSON, key="k1")
            assert status == 200

            def settled() -> bool:
                rows = query(db, "SELECT destination, state FROM deliveries ORDER BY destination")
                return rows == [("anonymous", "dead"), ("app", "delivered")]

            await wait_for(settled)
    finally:
        await runner.cleanup()
    assert peers == ["relay-client"]
