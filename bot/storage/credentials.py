"""The signing identity for Content Credentials, in the data directory.

`darkroom credentials init` makes a local root (ES256, P-256) and a signing certificate issued by
it, and writes two files, both mode 0600:

- `c2pa-chain.pem`: the signing certificate, then the root (public; the root is the trust anchor
  a reader is given to get "Trusted" instead of "Valid");
- `c2pa-key.pem`: the signing key, sealed: PKCS#8 encrypted with a password derived from the
  instance secret (HMAC-SHA256 with a label of its own, as storage's Sealer derives its key), so
  a copy of the data directory without the secret does not sign.

The root's own key is used once, to issue the signing certificate, and never written: a new
signing certificate needs a new root (`init --force`). An operator with a certificate from their
own CA brings it instead (`darkroom credentials import CHAIN KEY`); the key is sealed the same way.

Validity starts at midnight UTC, so no certificate in a result tells the time finer than the day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bot.settings import StartupError
from inference.provenance import SigningIdentity

CHAIN = "c2pa-chain.pem"
KEY = "c2pa-key.pem"
SEAL_LABEL = b"darkroom:signing-key-seal:v1"
ROOT_DAYS = 3650
SIGNER_DAYS = 730
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
PEM_SEALED_KEY = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class CredentialsError(Exception):
    """A signing identity that cannot be made, imported or opened (the message says why)."""


@dataclass(frozen=True)
class Subject:
    organisation: str

    def name(self, role: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organisation[:64] or "Darkroom"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.organisation[:40] or 'Darkroom'} {role}"),
            ]
        )


def exists(data_dir: Path) -> bool:
    return (data_dir / CHAIN).is_file() and (data_dir / KEY).is_file()


def _seal_password(secret: bytes) -> bytes:
    return hmac.new(secret, SEAL_LABEL, hashlib.sha256).hexdigest().encode()


def _midnight(now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def make_identity(organisation: str) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A new root and a signing certificate issued by it: (chain PEM, signing key). C2PA wants a
    signing certificate that is not self-signed, with digitalSignature and an EKU it accepts."""
    subject = Subject(organisation)
    day = _midnight()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(subject.name("root"))
        .issuer_name(subject.name("root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(day)
        .not_valid_after(day + dt.timedelta(days=ROOT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject.name("content credentials"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(day)
        .not_valid_after(day + dt.timedelta(days=SIGNER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    del root_key  # issued the one certificate it is for; never written anywhere
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem) + root.public_bytes(pem), key


def _usage(sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def init(data_dir: Path, secret: bytes, organisation: str, force: bool = False) -> Path:
    """Make a new signing identity in ``data_dir``; returns the chain's path."""
    if exists(data_dir) and not force:
        raise CredentialsError(f"a signing identity already exists in {data_dir} (use --force to replace it)")
    chain, key = make_identity(organisation)
    _write(data_dir, chain, key, secret)
    return data_dir / CHAIN


def import_identity(data_dir: Path, secret: bytes, chain_pem: bytes, key_pem: bytes, password: bytes | None = None) -> Path:
    """Bring the operator's own chain (signing certificate first, PEM) and its ES256 key."""
    try:
        certificates = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, password)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"the chain or the key cannot be read ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise CredentialsError("the key must be an ES256 (P-256) key")
    if certificates[0].public_key() != key.public_key():
        raise CredentialsError("the first certificate of the chain is not the key's")
    if len(certificates) < 2:
        raise CredentialsError("the chain must hold the signing certificate and its issuer (C2PA refuses a self-signed one)")
    pem = serialization.Encoding.PEM
    _write(data_dir, b"".join(c.public_bytes(pem) for c in certificates), key, secret)
    return data_dir / CHAIN


def _write(data_dir: Path, chain: bytes, key: ec.EllipticCurvePrivateKey, secret: bytes) -> None:
    sealed = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(_seal_password(secret)),
    )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, body in ((KEY, sealed), (CHAIN, chain)):
        path = data_dir / name
        temporary = path.with_name(f".{name}.new")  # whole files or none (no half-written key)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.replace(temporary, path)


def load(data_dir: Path, secret: bytes) -> SigningIdentity | None:
    """The identity in ``data_dir``, its key unsealed in memory; None when there is none."""
    if not exists(data_dir):
        return None
    try:
        chain = (data_dir / CHAIN).read_bytes()
        sealed = (data_dir / KEY).read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read the signing identity in {data_dir} ({exc.strerror}); check its owner and permissions") from None
    try:
        key = serialization.load_pem_private_key(sealed, _seal_password(secret))
    except (ValueError, TypeError):
        raise StartupError(
            f"the signing key {data_dir / KEY} does not open with this instance's secret; run "
            "`darkroom credentials init --force` to make a new identity"
        ) from None
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return SigningIdentity(chain_pem=chain, key_pem=plain)


def describe(chain_pem: bytes) -> list[str]:
    """One line per certificate of a chain: subject, issuer and validity (days)."""
    lines = []
    for certificate in x509.load_pem_x509_certificates(chain_pem):
        lines.append(
            f"{certificate.subject.rfc4514_string()} (issued by {certificate.issuer.rfc4514_string()}; "
            f"valid {certificate.not_valid_before_utc:%Y-%m-%d} to {certificate.not_valid_after_utc:%Y-%m-%d})"
        )
    return lines


def check_files(contents: dict[str, bytes]) -> list[str]:
    """Problems with the identity files among a data directory's ``contents`` (for the audit)."""
    problems = []
    chain, key = contents.get(CHAIN), contents.get(KEY)
    if chain is not None:
        try:
            certificates = x509.load_pem_x509_certificates(chain)
            # nothing but certificates: the file's bytes are exactly their PEM
            rebuilt = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
            if rebuilt.strip() != chain.strip():
                problems.append(f"{CHAIN} holds more than certificates")
        except ValueError:
            problems.append(f"{CHAIN} is not a PEM certificate chain")
    if key is not None and not (key.startswith(PEM_SEALED_KEY) and key.count(b"-----BEGIN") == 1):
        problems.append(f"{KEY} is not a sealed (encrypted) private key")
    if (chain is None) != (key is None):
        problems.append(f"only one of {CHAIN} and {KEY} is there; run `darkroom credentials init --force`")
    return problems
