"""Throw-away keys and certificates for the push look-alike servers.

A private CA signs a server certificate for 127.0.0.1/localhost (and, for APNS certificate
auth, a client certificate), so the real clients verify TLS as they would against Apple,
trusting only the extra CA file. Keys are made with `cryptography` on each start.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


def ec_private_key_pem() -> str:
    """A P-256 key as PKCS#8 PEM: the shape of an APNS .p8 signing key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def rsa_private_key_pem() -> str:
    """An RSA key as PKCS#8 PEM: the shape of a Google service account's private_key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _name(common_name: str, uid: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if uid is not None:
        attributes.append(x509.NameAttribute(NameOID.USER_ID, uid))
    return x509.Name(attributes)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class TestPki:
    """Files of one CA and what it signed; removed by `cleanup`."""

    __test__ = False  # not a pytest class

    directory: Path
    ca_file: str  # CA certificate, PEM
    server_cert_file: str  # certificate then key, PEM
    client_cert_pem: str  # certificate then key, PEM (APNS certificate auth)

    def server_context(self, *, alpn: list[str] | None = None,
                       client_certs: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert_file)
        if alpn:
            context.set_alpn_protocols(alpn)
        if client_certs:  # optional: token-auth clients send none
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(self.ca_file)
        return context

    def cleanup(self) -> None:
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()


def make_pki(client_uid: str = "com.example.rendezvous") -> TestPki:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate
    whose subject UID is `client_uid` (as Apple's push certificates carry the topic)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Rendezvous test CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                            crl_sign=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))

    def leaf(name: x509.Name, usage: x509.ObjectIdentifier,
             san: x509.SubjectAlternativeName | None) -> tuple[x509.Certificate,
                                                                 ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                              x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server_cert, server_key = leaf(_name("127.0.0.1"), ExtendedKeyUsageOID.SERVER_AUTH,
                                   server_san)
    client_cert, client_key = leaf(_name("Apple Push Services: test", client_uid),
                                   ExtendedKeyUsageOID.CLIENT_AUTH, None)

    directory = Path(tempfile.mkdtemp(prefix="rdv-push-pki-"))
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_file = directory / "server.pem"
    server_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM)
                            + _pem(server_key))
    server_file.chmod(0o600)
    client_pem = (client_cert.public_bytes(serialization.Encoding.PEM)
                  + _pem(client_key)).decode()
    return TestPki(directory, str(ca_file), str(server_file), client_pem)
