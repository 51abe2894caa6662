"""CURVE on the mesh's tcp links ("Ironhouse"): a zmq Context that carries each process's keys.

`secure_context(config, role)` is built once in `main()`; `make_socket` asks the context's
`security` to configure every socket before it binds or connects:

- a bound tcp socket is a CURVE server with the role's secret key; a ZAP authenticator in the
  process (started before the first bind) accepts only the keys in `<keys_dir>/authorized/`;
- a connecting tcp socket is a CURVE client with the role's keypair and the public key of the
  role that binds that endpoint (looked up from the config's endpoints);
- ipc and inproc links stay plain (file permissions guard them).

Every secured socket is watched by one monitor thread: failed handshakes and ZAP denials become
`security.*` counters (`security_counters(ctx)`), which the bus reports with the process's metrics.
"""

from __future__ import annotations

import functools
import logging
import queue
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from tickmesh.config import Config
from tickmesh.security import (
    KeyFileError,
    authorized_dir,
    curve_enabled,
    public_key_path,
    read_authorized,
    read_public_key,
    read_secret_key,
    secret_key_path,
    server_roles,
    tcp_host,
)
from tickmesh.sockets import EndpointError, monitor_event

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

ZAP_DOMAIN = b"tickmesh"
MONITORED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_MECHANISM = {zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH}
_CRYPTO = {zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE}
HINTS = {
    "security.denied": "client key not in the authorized keys folder",
    "security.handshake_failed.auth": "a client key was refused (not authorized); a refused client does not retry",
    "security.handshake_failed.crypto": "keys do not match: a client using a wrong server public key?",
    "security.handshake_failed.mechanism": "one side has CURVE off (or a peer that is not tickmesh)",
    "security.handshake_failed.protocol": "malformed handshake (a peer that is not tickmesh?)",
    "security.handshake_failed.other": "handshake cut short (seen by a client: a wrong server public key?)",
}


class SecurityError(EndpointError):
    """CURVE cannot be set up (a key file missing, malformed or too open); the message names the file."""


def failure_counter(event: int, value: int) -> str:
    """The counter a handshake-failure monitor event adds to."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "security.handshake_failed.auth"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value in _MECHANISM:
            return "security.handshake_failed.mechanism"
        return "security.handshake_failed.crypto" if value in _CRYPTO else "security.handshake_failed.protocol"
    return "security.handshake_failed.other"


class Counts:
    """Thread-safe counters (bumped in the ZAP and monitor threads, read by the process's loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def bump(self, name: str, where: str) -> None:
        with self._lock:
            n = self._counts[name] = self._counts.get(name, 0) + 1
        if name in HINTS and n & (n - 1) == 0:  # log the 1st, 2nd, 4th, 8th… time
            log.warning("%s on %s: %s (seen %d times)", name, where, HINTS[name], n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class AuthorizedKeys:
    """The ZAP credentials provider: a client is let in only if its public key is in the folder."""

    def __init__(self, keys: frozenset[bytes], counts: Counts) -> None:
        self.keys, self.counts = keys, counts

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.keys:
            return True
        self.counts.bump("security.denied", f"domain {domain} (client key {key.decode(errors='replace')})")
        return False


class HandshakeMonitor(threading.Thread):
    """Reads the monitor events of every secured socket and counts handshakes and failures."""

    def __init__(self, ctx: zmq.Context, counts: Counts) -> None:  # type: ignore[type-arg]
        super().__init__(name="tickmesh-curve-monitor", daemon=True)
        self.ctx, self.counts = ctx, counts
        self.incoming: queue.SimpleQueue[tuple[zmq.Socket, str]] = queue.SimpleQueue()  # type: ignore[type-arg]
        self.stopping = threading.Event()
        self._n = 0

    def watch(self, sock: zmq.Socket, endpoint: str) -> None:  # type: ignore[type-arg]
        """Start monitoring `sock` (call before it binds or connects, in the thread that owns it)."""
        self._n += 1
        address = f"inproc://tickmesh.curve.monitor.{id(self)}.{self._n}"
        sock.monitor(address, MONITORED)
        reader = self.ctx.socket(zmq.PAIR, socket_class=zmq.Socket)
        reader.setsockopt(zmq.LINGER, 0)
        reader.connect(address)  # connected now, so no event is lost; then handed to the thread
        self.incoming.put((reader, endpoint))

    def run(self) -> None:
        poller = zmq.Poller()
        readers: dict[zmq.Socket, str] = {}  # type: ignore[type-arg]
        try:
            while not self.stopping.is_set():
                while not self.incoming.empty():
                    reader, endpoint = self.incoming.get()
                    readers[reader] = endpoint
                    poller.register(reader, zmq.POLLIN)
                for reader, _ in poller.poll(100):
                    if not self._handle(reader, readers[reader]):
                        poller.unregister(reader)
                        reader.close(0)
                        del readers[reader]
        finally:
            for reader in readers:
                reader.close(0)
            while not self.incoming.empty():
                self.incoming.get()[0].close(0)

    def _handle(self, reader: zmq.Socket, endpoint: str) -> bool:  # type: ignore[type-arg]
        """Count one event; False once the monitored socket is gone."""
        try:
            kind, value = monitor_event(reader)
        except (zmq.ZMQError, struct.error):
            return False
        if kind == zmq.EVENT_MONITOR_STOPPED:
            return False
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.counts.bump("security.handshakes", endpoint)
        else:
            self.counts.bump(failure_counter(kind, value), endpoint)
        return True


# Who takes part when only the producer-facing sockets are CURVE (security.ingest = "curve"): the
# router serves them; feeds and any other producer (role `feed`) are clients.
INGEST_ROLES = frozenset({"router", "feed"})


class Security:
    """One process's CURVE identity: its keypair, the servers' public keys, the authenticator."""

    def __init__(
        self,
        config: Config,
        role: str,
        ctx: zmq.Context,  # type: ignore[type-arg]
        only: frozenset[str] | None = None,
    ) -> None:
        self.role, self.ctx, self.only = role, ctx, only  # only: secure these endpoints alone
        self.keys_dir = Path(config.security.keys_dir)
        self.servers = server_roles(config)
        self.counts = Counts()
        self.error: SecurityError | None = None
        self.public = self.secret = b""
        try:
            self.public, self.secret = read_secret_key(secret_key_path(self.keys_dir, role))
        except KeyFileError as exc:
            self.error = SecurityError(f"CURVE ({role}): {exc}")  # raised by the first socket made
        self._server_keys: dict[str, bytes] = {}
        self._auth: ThreadAuthenticator | None = None
        self._monitor: HandshakeMonitor | None = None
        self._lock = threading.Lock()

    def secure(self, sock: zmq.Socket, *, bind: str | None, connect: str | None) -> None:  # type: ignore[type-arg]
        """Make `sock` a CURVE server (bind) or client (connect) if its endpoint is tcp."""
        endpoint = bind if bind is not None else connect
        if endpoint is None or tcp_host(endpoint) is None or (self.only is not None and endpoint not in self.only):
            return
        if self.error is not None:
            raise self.error
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        if bind is not None:
            self._start_authenticator()
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        else:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key(endpoint))
        self._watch(sock, endpoint)

    def server_key(self, endpoint: str) -> bytes:
        """The public key of the role that binds `endpoint`; SecurityError if unknown or missing."""
        role = self.servers.get(endpoint)
        if role is None:
            raise SecurityError(
                f"CURVE ({self.role}): {endpoint} is not one of the configured endpoints, "
                "so its server key is unknown (configure it under [endpoints])"
            )
        if role not in self._server_keys:
            try:
                self._server_keys[role] = read_public_key(public_key_path(self.keys_dir, role))
            except KeyFileError as exc:
                raise SecurityError(f"CURVE ({self.role}, connecting to {endpoint}): {exc}") from None
        return self._server_keys[role]

    def _start_authenticator(self) -> None:
        """Before the first bind: without a ZAP handler, CURVE lets in any client that knows the server key."""
        with self._lock:
            if self._auth is not None:
                return
            try:
                keys = read_authorized(authorized_dir(self.keys_dir))
            except KeyFileError as exc:
                raise SecurityError(f"CURVE ({self.role}): {exc}") from None
            from zmq.auth.thread import ThreadAuthenticator  # here: it loads asyncio (see _async_context_type)

            auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("tickmesh.curve.zap"))
            auth.start()
            provider = AuthorizedKeys(keys, self.counts)
            auth.configure_curve_callback(domain=ZAP_DOMAIN.decode(), credentials_provider=provider)
            self._auth = auth
            where = authorized_dir(self.keys_dir)
            log.info("CURVE (%s): accepting %d client keys from %s", self.role, len(keys), where)

    def _watch(self, sock: zmq.Socket, endpoint: str) -> None:  # type: ignore[type-arg]
        with self._lock:
            if self._monitor is None:
                self._monitor = HandshakeMonitor(self.ctx, self.counts)
                self._monitor.start()
        self._monitor.watch(sock, endpoint)

    def counters(self) -> dict[str, int]:
        return self.counts.snapshot()

    def close(self) -> None:
        """Stop the authenticator and the monitor thread (their sockets would hold up ctx.term())."""
        with self._lock:
            if self._monitor is not None:
                self._monitor.stopping.set()
                self._monitor.join()
                self._monitor = None
            if self._auth is not None:
                self._auth.stop()
                self._auth = None


class _Secured:
    """A Context that carries a Security (None: plain sockets) and stops it before terminating."""

    security: Security | None = None

    def term(self) -> None:
        if self.security is not None:
            self.security.close()
        super().term()  # type: ignore[misc]

    def destroy(self, linger: int | None = None) -> None:
        if self.security is not None:
            self.security.close()
        super().destroy(linger)  # type: ignore[misc]


class SecureContext(_Secured, zmq.Context):  # type: ignore[type-arg]
    """A zmq.Context with the process's CURVE security."""


@functools.cache
def _async_context_type() -> type[zmq.Context[Any]]:
    """SecureContext's zmq.asyncio twin, made at first use. Importing zmq.asyncio loads asyncio and
    ssl: about 8 MB of RSS in each process, which only control (the one event loop) needs. pyzmq's
    ZAP authenticator runs on asyncio too, so it is imported only when a process turns CURVE on."""
    import zmq.asyncio

    class AsyncSecureContext(_Secured, zmq.asyncio.Context):
        """A zmq.asyncio.Context with the process's CURVE security."""

    return AsyncSecureContext


def secure_context(config: Config, role: str, *, asyncio: bool = False) -> Any:
    """The process's zmq Context: CURVE on its tcp links when the config turns it on.

    Key problems do not raise here: the first socket made raises SecurityError (an
    EndpointError, which every main() already reports), so a process stops at start.
    """
    ctx: Any = _async_context_type()() if asyncio else SecureContext()
    if curve_enabled(config.security, config.endpoints):
        ctx.security = Security(config, role, ctx)
        if ctx.security.error is None:
            log.info("CURVE on for zmq tcp links (%s key from %s)", role, config.security.keys_dir)
    elif config.security.ingest == "curve" and role in INGEST_ROLES:
        routers = [config.endpoints.for_router(i) for i in range(config.router.count)]
        ctx.security = Security(config, role, ctx, only=frozenset(e for ep in routers for e in (ep.ingest, ep.sync)))
        if ctx.security.error is None:
            log.info("CURVE on for ingest and sync only (%s key from %s)", role, config.security.keys_dir)
    return ctx


def security_counters(ctx: object) -> dict[str, int]:
    """The `security.*` counters of a context made by secure_context (empty without CURVE)."""
    security = getattr(ctx, "security", None)
    return security.counters() if isinstance(security, Security) else {}
