"""The local cluster's throwaway CA: certificates a TLS client on loopback accepts, keys only the owner reads."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

from cryptography import x509

from safebus.deploy.pki import LocalCA


def test_an_issued_certificate_names_loopback_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "pki")
    files = ca.issue(tmp_path / "pki", "kafka-broker")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    issuer = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    cert.verify_directly_issued_by(issuer)
    # Python's own TLS stack accepts the pair and trusts the CA file (what aiokafka will use).
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.load_cert_chain(str(files.cert), str(files.key))


def test_private_keys_are_owner_only_and_the_ca_is_kept(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "pki")
    files = ca.issue(tmp_path / "pki", "school-900101")
    for private in (files.key, files.bundle, tmp_path / "pki" / "ca-key.pem"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    again = LocalCA(tmp_path / "pki")
    assert again.cert_path.read_bytes() == ca.cert_path.read_bytes()
    assert again.issue(tmp_path / "pki", "school-900101").cert.read_bytes() == files.cert.read_bytes()
