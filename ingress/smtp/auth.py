"""smtp-server: AUTH PLAIN/LOGIN logins checked against the configured users (submission clients).

A secret is a password, or "pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>"
(make one with ``python -m ingress.smtp.auth PASSWORD``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from collections.abc import Mapping

from pydantic import SecretStr


def hash_password(password: str, iterations: int = 200_000) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def password_ok(secret: str, password: str) -> bool:
    if secret.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, want = secret.split("$")
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
        except ValueError:
            return False
        return hmac.compare_digest(got.hex(), want)
    return hmac.compare_digest(secret.encode(), password.encode())


class Authenticator:
    """Checks a login and password against the configured users (the engine's AUTH)."""

    def __init__(self, users: Mapping[str, SecretStr]) -> None:
        self.users = {u: s.get_secret_value() for u, s in users.items()}

    def __call__(self, login: str, password: str) -> bool:
        secret = self.users.get(login)
        return secret is not None and password_ok(secret, password)


if __name__ == "__main__":
    print(hash_password(sys.argv[1]))
