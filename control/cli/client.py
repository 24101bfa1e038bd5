"""control/cli — the CLI's end of control-server: a gRPC channel with the token, and errors people can read.

Exit codes of the `mailgate services|queue|config` commands: 0 done, 1 other
failure, 2 a wrong argument, 3 not found, 4 control-server cannot be reached,
5 not allowed (no or bad token, or a user's token for an administrator's command).
"""

from __future__ import annotations

import re
from typing import Any

import grpc

from control.proto.rpc import pb_grpc
from core.settings import Settings

EXIT = {grpc.StatusCode.INVALID_ARGUMENT: 2, grpc.StatusCode.NOT_FOUND: 3, grpc.StatusCode.UNAVAILABLE: 4,
        grpc.StatusCode.DEADLINE_EXCEEDED: 4, grpc.StatusCode.UNAUTHENTICATED: 5,
        grpc.StatusCode.PERMISSION_DENIED: 5}
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ControlError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_duration(text: str) -> float:
    """ "90", "90s", "15m", "2h", "1h30m" → seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhd]?)", "", text.strip().lower()).strip():
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 30m, 2h")
    return sum(float(n) * UNITS[u] for n, u in parts)


class ControlClient:
    def __init__(self, settings: Settings, server: str | None = None, token: str | None = None) -> None:
        cfg = settings.control
        self.address = server or f"{cfg.host}:{cfg.port}"
        secret = token or (cfg.token.get_secret_value() if cfg.token else None)
        self.metadata = [("authorization", f"Bearer {secret}")] if secret else []
        self.timeout = cfg.timeout_s
        if cfg.tls_ca_file is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=cfg.tls_ca_file.read_bytes())
            self.channel = grpc.secure_channel(self.address, creds)
        else:
            self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.ControlStub(self.channel)

    def call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> ControlError:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        details: str = exc.details() or code.name  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and "Kafka" not in details:
            details = (f"cannot reach control-server at {self.address} ({details}): is `mailgate up` running "
                       "there? Set MAILGATE_CONTROL__HOST/__PORT or --server")
        elif code == grpc.StatusCode.UNAUTHENTICATED:
            details += "; set MAILGATE_CONTROL__TOKEN or --token"
        return ControlError(details, EXIT.get(code, 1))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
