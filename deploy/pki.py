"""
A throwaway certificate authority for the local secured cluster, made with `cryptography`.

The brokers' TLS listeners need a certificate each and every client needs the
CA that signed them.  Kafka reads PEM directly (``ssl.keystore.type=PEM``), so
the files are made here and no Java ``keytool`` step exists.  The CA's key
stays in the cluster's state directory (mode 0600) so a client certificate
for mutual TLS can be issued later; this is a development CA for one machine,
never a partnership's.

Certificates name ``127.0.0.1`` and ``localhost`` (the cluster listens on
loopback only) and clients check them (``ssl.endpoint.identification.algorithm=https``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safebus.private_files import write_private

__all__ = ["BROKER_CN", "CertificateFiles", "LocalCA"]

BROKER_CN = "kafka-broker"
"""Every node's certificate subject; brokers and controllers authenticate to each other as ``User:CN=kafka-broker``."""

_VALID = dt.timedelta(days=825)
_KEY_BITS = 2048  # RSA: what every TLS stack of the bus (JVM, OpenSSL in librdkafka and Python) accepts


@dataclass(frozen=True)
class CertificateFiles:
    """A PEM file holding a private key and its certificate chain, and the separate certificate and key files."""

    bundle: Path
    """Key, certificate, CA certificate: the form a Kafka PEM keystore reads."""
    cert: Path
    key: Path


class LocalCA:
    """The CA in `root` (``ca.pem``, ``ca-key.pem``), created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cert_path = root / "ca.pem"
        self._key_path = root / "ca-key.pem"
        if not self.cert_path.exists():
            self._create()
        self._key = serialization.load_pem_private_key(self._key_path.read_bytes(), password=None)
        self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def _create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "safebus local cluster CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(self._key_path, _key_pem(key))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, directory: Path, common_name: str) -> CertificateFiles:
        """
        A key and certificate for `common_name`, valid for TLS server and client use on loopback.

        Written once into `directory` as ``<cn>.pem`` (bundle), ``<cn>.crt`` and ``<cn>.key``; reissued
        only when missing.
        """
        files = CertificateFiles(bundle=directory / f"{common_name}.pem", cert=directory / f"{common_name}.crt",
                                 key=directory / f"{common_name}.key")
        if files.bundle.exists() and files.cert.exists() and files.key.exists():
            return files
        directory.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
        now = dt.datetime.now(dt.UTC)
        ca_public = self._cert.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),  # type: ignore[arg-type]
                           critical=False)
            .sign(self._key, hashes.SHA256())  # type: ignore[arg-type]
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key)
        write_private(files.key, key_pem)
        write_private(files.bundle, key_pem + cert_pem + self.cert_path.read_bytes())
        files.cert.write_bytes(cert_pem)
        return files


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#8, unencrypted: the form Kafka's PEM keystore reads without a key password (files are 0600)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
