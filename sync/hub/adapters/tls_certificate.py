"""The hub's own TLS certificate: a self-signed one made for the host names devices use
(`clinic hub init --tls-host`, `clinic hub certificate`), or the operator's own files.

Devices pin this certificate (or the CA that signed the operator's) at enrollment
(`clinic enroll --hub-ca`): the file to give them is `hub-tls.crt`, and its SHA-256
fingerprint is what to compare by eye.
"""

import ipaddress
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync.hub.model import HubError
from sync.protocol import certificate_fingerprint

CERTIFICATE_FILE = "hub-tls.crt"
KEY_FILE = "hub-tls.key"
# Devices pin the certificate itself: a new one means pinning again on every device, so
# it lasts long (docs/security.md, "Renewal and re-pinning").
DEFAULT_VALIDITY = timedelta(days=5 * 365)
# Valid from a year back: a terminal whose clock lags (no real-time clock, offline boots)
# still accepts it; the pin, not the dates, is what it trusts.
BACKDATED = timedelta(days=365)


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c.isspace() or c in "/:@" for c in host):
                raise HubError(f"{host!r} is not a host name or IP address") from None
            names.append(x509.DNSName(host))
    return names


def self_signed(
    hosts: list[str], now: datetime, validity: timedelta = DEFAULT_VALIDITY
) -> tuple[bytes, bytes]:
    """A self-signed server certificate for `hosts` and its key (both PEM)."""
    if not hosts:
        raise HubError("give at least one host name or address devices use for the hub")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
            # Each certificate its own subject, so that old and new never look alike.
            x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8)),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATED)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def write_self_signed(data_dir: Path, hosts: list[str], now: datetime) -> dict:
    """Make the hub's certificate and key in `data_dir` (the key 0600, whatever the
    folder), replacing older ones; returns the paths and the fingerprint."""
    certificate_pem, key_pem = self_signed(hosts, now)
    data_dir = Path(data_dir)
    key_path, certificate_path = data_dir / KEY_FILE, data_dir / CERTIFICATE_FILE
    _write(key_path, key_pem, 0o600)
    _write(certificate_path, certificate_pem, 0o644)
    return {
        "certificate": str(certificate_path),
        "key": str(key_path),
        "hosts": hosts,
        "fingerprint": certificate_fingerprint(certificate_pem),
    }


def _write(path: Path, data: bytes, mode: int) -> None:
    """Written beside, then renamed over: a server never reads half a file."""
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def configured(data_dir: Path) -> tuple[Path, Path] | None:
    """The certificate and key `clinic hub serve` uses by default, if the hub has them."""
    certificate_path, key_path = Path(data_dir) / CERTIFICATE_FILE, Path(data_dir) / KEY_FILE
    if certificate_path.exists() and key_path.exists():
        return certificate_path, key_path
    return None
