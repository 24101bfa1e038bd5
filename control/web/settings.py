"""web-console: its settings section ``[web]`` (``MAILGATE_WEB__PORT``, ...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator


class WebSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Where web-console listens.")
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="The console's address as people reach it: links in mail (CISS challenges, digests) start here.")
    tls_cert_file: Path | None = Field(default=None, description="PEM chain: the console speaks HTTPS; unset: HTTP.")
    tls_key_file: Path | None = Field(default=None, description="PEM key of tls_cert_file.")
    secret_file: Path | None = Field(
        default=None,
        description="The key that signs cookies and links (created, mode 0600, when missing); "
                    "unset: <home>/web-secret. Every node of a cluster needs the same key.")

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r}: the public address starts with http:// or https:// (the base of links in mail)")
        return v.rstrip("/")

    def secret_path(self, home: Path) -> Path:
        return self.secret_file or home / "web-secret"

    def link(self, path: str) -> str:
        """An absolute link for mail: the public address and ``path``."""
        return f"{self.public_url}/{path.lstrip('/')}"
