"""Homeservers that federate on loopback, for tests: a test CA and each server's TLS setup.

::

    TestCA(dir)                      ca.pem (self-signed, generated per test run)
      .issue("hs1") -> ServerCert    hs1.pem / hs1.key: SAN IP 127.0.0.1 + DNS localhost
    federation_settings(port, cert, ca)
      -> Synapse settings: a TLS listener (federation + keys) on ``port``, certificates of
         other servers checked against the test CA only, loopback allowed as a destination

A server is named ``localhost:<federation port>``: a name with an explicit port needs no
SRV record or ``.well-known`` (Synapse resolves the host, connects to that port and checks
that the certificate is valid for the host name). Its users are ``@name:localhost:<port>``.
Not an IP literal such as ``127.0.0.1:<port>``: Synapse checks IP-literal server names
against ``ip_range_blacklist`` without its ``ip_range_whitelist``, so loopback could only
be allowed by emptying the blocklist; with a host name, only ``127.0.0.1`` is let through.
Each server fetches the others' signing keys from them directly (``trusted_key_servers:
[]``), over the same checked TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"


def server_name(federation_port: int) -> str:
    """The server name of a homeserver whose federation listener is on ``federation_port``."""
    return f"localhost:{federation_port}"


@dataclass(frozen=True)
class ServerCert:
    cert_path: Path
    key_path: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


class TestCA:
    """A certificate authority that exists only for one test run."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Wijkbrug test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str) -> ServerCert:
        """A server certificate for loopback (IP 127.0.0.1, DNS localhost), signed by the CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_path = self.directory / f"{name}.pem"
        key_path = self.directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return ServerCert(cert_path, key_path)


def federation_listener(port: int) -> dict[str, Any]:
    """A TLS listener on loopback serving the federation API and the server's keys."""
    return {
        "port": port,
        "bind_addresses": [LOOPBACK],
        "type": "http",
        "tls": True,
        "x_forwarded": False,
        "resources": [{"names": ["federation", "keys"], "compress": False}],
    }


def federation_settings(cert: ServerCert, ca: TestCA) -> dict[str, Any]:
    """Synapse settings (top-level keys) for federating with other test servers: this
    server's certificate, and other servers' certificates checked against the test CA."""
    return {
        "tls_certificate_path": str(cert.cert_path),
        "tls_private_key_path": str(cert.key_path),
        # Check every remote server's certificate, against the test CA and nothing else.
        "federation_verify_certificates": True,
        "federation_custom_ca_list": [str(ca.cert_path)],
        # Synapse refuses to contact private addresses (loopback included) by default;
        # "localhost" also resolves to ::1, which stays refused (nothing listens there).
        "ip_range_whitelist": [LOOPBACK],
        # Signing keys come from each server itself, never from matrix.org.
        "trusted_key_servers": [],
        "allow_public_rooms_over_federation": False,
    }
