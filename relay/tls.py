"""TLS for the public listener: server contexts, certificate facts, TLS-ALPN-01 answers,
and a look at a ClientHello before the handshake.

Modern defaults: TLS 1.2 and 1.3 only, HTTP/1.1 by ALPN, OpenSSL's default ciphers (no
RC4, no 3DES, no export suites), no compression, no renegotiation. A context is built once
per certificate; swapping the certificate means new connections get a new context while
open ones keep theirs, so nothing is dropped.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACME_TLS = "acme-tls/1"  # the ALPN protocol of TLS-ALPN-01 (RFC 8737)
ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def server_context(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A server context for one certificate chain; ssl.SSLError or OSError if the files
    cannot be read or do not match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    not_before: float
    not_after: float
    serial: int
    names: tuple[str, ...]
    issuer: str

    def covers(self, domains: list[str]) -> bool:
        return all(_matches(d, self.names) for d in domains)

    def due(self, now: float, renew_before: float) -> bool:
        """Renewal is due: within ``renew_before`` seconds of expiry, or past two thirds of
        the certificate's lifetime, whichever comes first."""
        lifetime = self.not_after - self.not_before
        return now >= min(self.not_after - renew_before, self.not_before + lifetime * 2 / 3)


def _matches(domain: str, names: tuple[str, ...]) -> bool:
    domain = domain.lower()
    for name in names:
        name = name.lower()
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


def facts(pem: bytes) -> CertificateFacts:
    """The first certificate of a PEM chain; ValueError if there is none."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = tuple(
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        )
    return CertificateFacts(
        cert.not_valid_before_utc.timestamp(),
        cert.not_valid_after_utc.timestamp(),
        cert.serial_number,
        names,
        cert.issuer.rfc4514_string(),
    )


def check_pair(cert_file: Path, key_file: Path) -> CertificateFacts:
    """That the files are readable PEM and the key is the certificate's; ValueError with
    what is wrong and the fix."""
    try:
        pem = cert_file.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read cert_file {cert_file} ({exc.strerror})") from None
    try:
        found = facts(pem)
    except ValueError:
        raise ValueError(f"cert_file {cert_file} holds no PEM certificate") from None
    try:
        server_context(cert_file, key_file)
    except ssl.SSLError as exc:  # before OSError, of which it is a kind
        raise ValueError(
            f"key_file {key_file} does not match cert_file {cert_file} ({exc.reason}); give "
            "the private key of the certificate"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read key_file {key_file} ({exc.strerror})") from None
    return found


def challenge_context(domain: str, key_authorization: str) -> ssl.SSLContext:
    """What answers a TLS-ALPN-01 challenge for ``domain``: a self-signed certificate with
    the acmeIdentifier extension (the SHA-256 of the key authorization), spoken only over
    the ``acme-tls/1`` protocol (RFC 8737)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS])
    # ssl loads chains from files only: a private temporary file, gone at once.
    with tempfile.TemporaryDirectory(prefix="relay-alpn-") as folder:
        path = Path(folder) / "challenge.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(cert.public_bytes(serialization.Encoding.PEM))
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        context.load_cert_chain(str(path))
    return context
