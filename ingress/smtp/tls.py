"""smtp-server: the TLS context of STARTTLS and the implicit-TLS port.

With a configured certificate and key those are used; otherwise a self-signed
certificate for the server's hostname is made once (``cryptography``) and kept in
``<home>/tls/`` so that local runs and tests have TLS without any setup.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from ingress.smtp.settings import SmtpTlsSettings


def self_signed(hostname: str, directory: Path) -> tuple[Path, Path]:
    """(cert, key) for ``hostname`` in ``directory``, made on first use."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / f"{hostname}.crt", directory / f"{hostname}.key"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    tmp_key = key_path.with_suffix(".tmp")
    tmp_key.touch(mode=0o600)
    tmp_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    tmp_key.replace(key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cfg: SmtpTlsSettings, hostname: str, home: Path) -> ssl.SSLContext:
    if (cfg.cert_file is None) != (cfg.key_file is None):
        raise ValueError("set both MAILGATE_SMTP_SERVER__TLS__CERT_FILE and __KEY_FILE, or neither")
    if cfg.cert_file is not None and cfg.key_file is not None:
        cert, key = cfg.cert_file, cfg.key_file
    else:
        cert, key = self_signed(hostname, home / "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if cfg.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate {cert} / key {key}: {exc}") from exc
    return ctx
