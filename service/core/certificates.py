"""Checking the PEM a callback's TLS options carry, at registration: a client certificate
that is valid now and whose private key matches it, and CA certificates that parse. The
errors name the field, so a partner knows which paste went wrong."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.core.errors import ValidationFailed


def _refuse(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(errors=[{"field": field, "message": message}])


def check_client_certificate(certificate_pem: str, private_key_pem: str) -> None:
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        raise _refuse("auth.certificate", "not a PEM certificate") from None
    now = datetime.now(UTC)
    if certificate.not_valid_after_utc <= now:
        raise _refuse("auth.certificate", f"expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    if certificate.not_valid_before_utc > now:
        raise _refuse("auth.certificate", "not valid yet")
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise _refuse("auth.privateKey", "not an unencrypted PEM private key") from None
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != certificate.public_key().public_bytes(*raw):
        raise _refuse("auth.privateKey", "does not match the certificate")


def check_ca_certificates(pem: str) -> None:
    try:
        found = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        found = []
    if not found:
        raise _refuse("tls.caCertificate", "not PEM certificates")
