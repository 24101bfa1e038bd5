"""control-server: who is calling (a bearer token), and what each role may call.

Every call carries ``authorization: Bearer <token>``; the tokens are
``control.tokens`` ("admin:NAME" or "user:ADDRESS" → token). Without a valid
token: UNAUTHENTICATED; a user calling an administrator method: PERMISSION_DENIED.
Health checking and reflection are open (they say nothing about mail).
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from pydantic import SecretStr

ADMIN, USER = "admin", "user"
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
USER_METHODS = frozenset({"ListQueue", "ShowMail", "ReleaseMail", "DeleteMail", "ReportMail", "WhoAmI"})


@dataclass(frozen=True)
class Principal:
    role: str  # admin | user
    name: str  # an administrator's name, or a user's mail address

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current() -> Principal:
    """The caller of the RPC being served (set by ``AuthInterceptor``)."""
    return _current.get()


class Tokens:
    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        self._entries = []
        for who, secret in tokens.items():
            role, _, name = who.partition(":")
            self._entries.append((secret.get_secret_value().encode(), Principal(role, name.lower() if role == USER
                                                                                  else name)))

    def resolve(self, token: str) -> Principal | None:
        given = token.encode()
        found = None
        for secret, principal in self._entries:  # compare with every token: no early exit to time
            if hmac.compare_digest(secret, given):
                found = principal
        return found


def bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def allowed(principal: Principal, method: str) -> bool:
    return principal.is_admin or method.rsplit("/", 1)[-1] in USER_METHODS


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        method: str = details.method
        if method.startswith(OPEN_PREFIXES):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return handler
        if handler.unary_unary is None and handler.unary_stream is None:  # fail closed: client streams get no check
            return _deny(grpc.StatusCode.UNIMPLEMENTED,
                         f"{method} is a client-streaming method, and the token check covers one-request methods only")
        token = bearer(details.invocation_metadata)
        principal = self.tokens.resolve(token) if token else None
        if principal is None:
            why = "a valid token" if token else "a token"
            return _deny(grpc.StatusCode.UNAUTHENTICATED,
                         f"{method} needs {why}: send the metadata 'authorization: Bearer <token>'")
        if not allowed(principal, method):
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"{method.rsplit('/', 1)[-1]} is for administrators; {principal.actor} is a user")
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streamed_as(principal, handler.unary_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        inner = handler.unary_unary

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            reset = _current.set(principal)
            try:
                return inner(request, context)
            finally:
                _current.reset(reset)

        return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


Streaming = Callable[[Any, Any], Iterator[Any]]


def _streamed_as(principal: Principal, inner: Streaming) -> Streaming:
    """A server-streaming method run as ``principal``: each step of its iterator runs in a context
    of its own that holds the caller (gRPC pulls the responses one by one, after the call returned)."""
    def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        ctx = contextvars.copy_context()
        ctx.run(_current.set, principal)
        responses = ctx.run(inner, request, context)
        try:
            while (response := ctx.run(next, responses, _END)) is not _END:
                yield response
        finally:  # the client went away (or the end): the method's resources close now
            close = getattr(responses, "close", None)
            if close is not None:
                ctx.run(close)

    return behaviour


_END = object()


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def abort(_request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)
