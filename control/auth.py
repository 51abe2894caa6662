"""The admin token: where it comes from, and the interceptor that demands it on every RPC but health."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from tickmesh.security import private_dirs, secret_mode_problem

TOKEN_ENV = "TICKMESH_ADMIN_TOKEN"
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # probes carry no secrets


class TokenError(RuntimeError):
    """No usable token: the message says where one was looked for."""


def read_token(env: Mapping[str, str], token_file: str | Path) -> tuple[str, str] | None:
    """(token, where it came from) from the environment, else the token file; None if neither exists.

    The file must be private to its owner or group (0600, 0400, 0640, 0440), like a secret key.
    """
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip(), TOKEN_ENV
    path = Path(token_file)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror}") from None
    problem = secret_mode_problem(path, "admin token file")
    if problem:
        raise TokenError(problem)
    if not token:
        raise TokenError(f"token file {path} is empty")
    return token, str(path.resolve())


def create_token_file(token_file: str | Path) -> tuple[str, str]:
    """Write a new random token to `token_file` with mode 0600; (token, absolute path).

    The file appears whole: the token is written to a private temporary file first, then linked
    to its name, so a process reading it meanwhile (tickmesh-web at start) finds no file or the
    whole token, never an empty one; and the link never replaces a token another process just
    wrote (EEXIST).
    """
    path = Path(token_file)
    private_dirs(path.parent)
    token = secrets.token_urlsafe(32)
    draft = path.with_name(f".{path.name}.{os.getpid()}.new")
    draft.unlink(missing_ok=True)  # left by a process of this pid that died here
    try:
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(token + "\n")
        os.link(draft, path)
    except OSError as exc:
        raise TokenError(f"cannot create token file {path}: {exc.strerror}") from None
    finally:
        draft.unlink(missing_ok=True)
    return token, str(path.resolve())


def server_token(env: Mapping[str, str], token_file: str | Path) -> tuple[str, str, bool]:
    """(token, where, created): the configured token, or a freshly created token file."""
    found = read_token(env, token_file)
    if found is not None:
        return found[0], found[1], False
    token, where = create_token_file(token_file)
    return token, where, True


def token_matches(metadata: Any, token: str) -> bool:
    """True if the call metadata carries `authorization: Bearer <token>` (constant-time compare)."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            scheme, _, given = text.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
                return True
    return False


def _denied(message: str) -> Callable[..., Awaitable[None]]:
    async def deny(request: Any, context: aio.ServicerContext) -> None:  # type: ignore[type-arg]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return deny


class TokenInterceptor(aio.ServerInterceptor):
    """Refuses every call without the right bearer token (health checks excepted)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        if token_matches(metadata, self.token):
            return handler
        has_header = any(k.lower() == "authorization" for k, _ in metadata or ())
        deny = _denied("invalid admin token" if has_header else "missing `authorization: Bearer <token>`")
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)
