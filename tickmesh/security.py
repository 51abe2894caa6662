"""CURVE policy without sockets: which role binds each endpoint, when CURVE is on, and the key files.

Key folder layout (`tickmesh-keys create` writes it):

    <keys_dir>/<role>.key          public key of a role (give it to every host)
    <keys_dir>/<role>.key_secret   its secret key, 0600/0400 (0640/0440: group) on the hosts that run the role
    <keys_dir>/authorized/*.key    client public keys a binding process accepts

The files use the ZPL certificate format of czmq and `zmq.auth`, so either can read them.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from tickmesh.endpoints import INTERNAL, ROUTED

if TYPE_CHECKING:
    from tickmesh.config import Config, SecurityConfig
    from tickmesh.endpoints import Endpoints

# One key pair per role, so an operator can revoke one alone: a process uses its own role's key ("worker" for a
# worker supervisor and its shards; "subscriber" for tickmesh-subscribe and tickmesh-web, the read-only clients).
ROLES: tuple[str, ...] = ("router", "worker", "aggregator", "control", "feed", "subscriber", "journal")
# Who binds each zmq endpoint (the table in tickmesh/endpoints.py): a client takes that role's public key.
ENDPOINT_ROLES: dict[str, str] = {
    "ingest": "router",
    "sync": "router",
    "acks": "router",
    "tick": "router",
    "ohlcv": "router",
    "fmv": "router",
    "events": "aggregator",
    "publish": "aggregator",
    "replay": "aggregator",
    "control_config": "control",
    "control_status": "control",
}
SERVER_ROLES: tuple[str, ...] = ("router", "aggregator", "control")  # the roles that bind zmq endpoints
SHARDED = ("tick", "ohlcv", "fmv")
SECRET_FORBIDDEN_BITS = 0o027  # group write, anything for others: 0600, 0400, 0640, 0440 pass
MAX_SHARDS = 64  # the config's upper bound for a channel's shards
LOOPBACK_HOSTS = frozenset({"localhost", "lo", "::1", "[::1]", "ip6-localhost"})
Z85_KEY = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_KEY_LINE = re.compile(rb'^\s*(public-key|secret-key)\s*=\s*"([^"]*)"\s*$', re.MULTILINE)


class KeyFileError(ValueError):
    """A key file is missing, unreadable, malformed or too open; the message names the file."""


def tcp_host(endpoint: str) -> str | None:
    """The host (or interface) of a `tcp://host:port` endpoint; None for ipc, inproc and the like."""
    if not endpoint.startswith("tcp://"):
        return None
    address = endpoint[len("tcp://") :].rpartition(";")[2]  # "source;destination" connects
    host = address.rpartition(":")[0]
    return host.strip("[]") if host.startswith("[") else host


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, localhost and the `lo` interface; `*` and 0.0.0.0 are not loopback."""
    return host.lower() in LOOPBACK_HOSTS or host.startswith("127.") or host == "::1"


def curve_enabled(security: SecurityConfig, endpoints: Endpoints) -> bool:
    """`on`/`off` as configured; `auto` is on as soon as any zmq endpoint is a non-loopback tcp address."""
    if security.curve != "auto":
        return security.curve == "on"
    for name in ENDPOINT_ROLES:
        host = tcp_host(getattr(endpoints, name))
        if host is not None and not is_loopback(host):
            return True
    return False


def open_links(config: Config) -> list[str]:
    """The private links (tickmesh/endpoints.py INTERNAL) that any local process can connect to: tcp
    without CURVE. Allowed by config, but every process says so at start (docs/security.md)."""
    if curve_enabled(config.security, config.endpoints):
        return []
    return [name for name in INTERNAL if getattr(config.endpoints, name).startswith("tcp://")]


def server_roles(config: Config) -> dict[str, str]:
    """Every zmq endpoint address of the config (shard addresses included) → the role that binds it."""
    ep = config.endpoints
    routers = [ep.for_router(i) for i in range(config.router.count)]  # each router's own endpoints
    roles = {r.shard(name, s): "router" for r in routers for name in SHARDED for s in range(MAX_SHARDS)}
    roles.update({getattr(r, name): "router" for r in routers[1:] for name in ENDPOINT_ROLES if name in ROUTED})
    roles.update({getattr(ep, name): role for name, role in ENDPOINT_ROLES.items()})  # named ones win
    return roles


def public_key_path(keys_dir: str | Path, role: str) -> Path:
    return Path(keys_dir) / f"{role}.key"


def secret_key_path(keys_dir: str | Path, role: str) -> Path:
    return Path(keys_dir) / f"{role}.key_secret"


def authorized_dir(keys_dir: str | Path) -> Path:
    return Path(keys_dir) / "authorized"


def format_key_file(public: bytes, secret: bytes | None = None) -> str:
    """A ZPL certificate, as czmq and `zmq.auth.load_certificate` read it."""
    kind = "Secret" if secret else "Public"
    lines = [f"#   ZeroMQ CURVE **{kind}** Certificate (tickmesh-keys)"]
    if secret:
        lines.append("#   Keep this file mode 0600 and on the hosts that run this role only.")
    lines += ["", "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def parse_key_file(text: bytes, path: Path) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a ZPL certificate's text; KeyFileError naming `path` if malformed."""
    found = {name: value for name, value in _KEY_LINE.findall(text)}
    public, secret = found.get(b"public-key"), found.get(b"secret-key")
    if public is None or not Z85_KEY.fullmatch(public):
        raise KeyFileError(f"{path}: no valid public-key (40 Z85 characters)")
    if secret is not None and not Z85_KEY.fullmatch(secret):
        raise KeyFileError(f"{path}: the secret-key is not 40 Z85 characters")
    return public, secret


def read_public_key(path: Path) -> bytes:
    """The public key in `path`; KeyFileError naming the file when it is missing or malformed."""
    return parse_key_file(_read(path, "public key"), path)[0]


def read_secret_key(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a secret key file that only its owner can read; KeyFileError otherwise."""
    role = path.name.removesuffix(".key_secret")  # a folder made before a role existed lacks only that role's files
    text = _read(path, "secret key", fix=f"add it with `tickmesh-keys create --dir {path.parent} {role}`, which keeps "
                 "the keys that exist; processes that bind read authorized/ at start: restart them")  # fmt: skip
    check_private(path)
    public, secret = parse_key_file(text, path)
    if secret is None:
        raise KeyFileError(f"{path}: no secret-key in this file (is it a public key file?)")
    return public, secret


def check_private(path: Path) -> None:
    """Refuse a secret key file that others can read (or anyone but its owner can write)."""
    problem = secret_mode_problem(path, "secret key file")
    if problem:
        raise KeyFileError(problem)


def secret_mode_problem(path: Path, what: str) -> str | None:
    """Why a secret file's mode is too open, with the fix; None when it is private to its owner or group.

    0600, 0400, 0640 and 0440 pass (a group may read a secret, as Kubernetes Secrets mounted
    with `defaultMode: 0440` and an fsGroup give it); any bit for others, or group write, fails.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & SECRET_FORBIDDEN_BITS:
        return None
    return (
        f"{path}: {what} is {'world-accessible' if mode & 0o007 else 'group-writable'} (mode {mode:04o}); "
        f"refusing to start: run `chmod 600 {path}` (or 640 / 440 to let its group read it; "
        "on Kubernetes mount the Secret with `defaultMode: 0400`)"
    )


def read_authorized(folder: Path) -> frozenset[bytes]:
    """The public keys of every `*.key` file in `folder`; KeyFileError if there is none or one is bad."""
    if not folder.is_dir():
        raise KeyFileError(f"{folder}: no authorized keys folder (create keys with `tickmesh-keys create`)")
    keys = frozenset(read_public_key(path) for path in sorted(folder.glob("*.key")))
    if not keys:
        raise KeyFileError(f"{folder}: no *.key files: no client would be accepted")
    return keys


def _read(path: Path, what: str, fix: str = "create keys with `tickmesh-keys create`") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: {what} file missing ({fix})") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {what} file: {exc.strerror}") from None


def write_new_file(path: Path, text: str, mode: int) -> None:
    """Write `text` to a file created with `mode` from the start (O_EXCL: never an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def private_dirs(folder: Path) -> None:
    """Create `folder` and each missing parent with mode 0700 (`mkdir(parents=True)` would make the
    parents 0777 less the umask: `.tickmesh` came out 0755 when a dead-letter folder was made first)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first, the same way
            path.mkdir(mode=0o700)
