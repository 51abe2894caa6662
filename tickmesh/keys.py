"""`tickmesh-keys`: create and check the CURVE keypairs of the mesh's roles (secret files 0600)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import zmq

from tickmesh.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Option, command_parser, subcommand_parent
from tickmesh.config import ConfigError, load_config
from tickmesh.security import (
    ROLES,
    SERVER_ROLES,
    KeyFileError,
    authorized_dir,
    format_key_file,
    public_key_path,
    read_authorized,
    read_public_key,
    read_secret_key,
    secret_key_path,
    write_new_file,
)


def create_role(keys_dir: Path, role: str, *, force: bool = False) -> bool:
    """Write `role`'s keypair and authorize its public key; False if it exists and `force` is off.

    The secret file is created with mode 0600 (O_EXCL, never chmod-ed afterwards); with
    `force`, a new file is written beside it and renamed over the old one.
    """
    public_file, secret_file = public_key_path(keys_dir, role), secret_key_path(keys_dir, role)
    if not force and (public_file.exists() or secret_file.exists()):
        return False
    public, secret = zmq.curve_keypair()
    for path, text, mode in (
        (secret_file, format_key_file(public, secret), 0o600),
        (public_file, format_key_file(public), 0o644),
        (authorized_dir(keys_dir) / f"{role}.key", format_key_file(public), 0o644),
    ):
        fresh = path.with_name(f".{path.name}.{os.getpid()}.new")
        fresh.unlink(missing_ok=True)
        write_new_file(fresh, text, mode)
        fresh.replace(path)
    return True


def create(keys_dir: Path, roles: Sequence[str], *, force: bool = False) -> list[str]:
    """Create the folders (0700) and every role's keys; the lines to print."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    authorized_dir(keys_dir).mkdir(mode=0o700, exist_ok=True)
    lines, added, kept = [], [], []
    for role in roles:
        if create_role(keys_dir, role, force=force):
            secret, public = secret_key_path(keys_dir, role), public_key_path(keys_dir, role)
            lines.append(f"{role}: wrote {secret} (0600) and {public}")
            added.append(role)
        else:
            lines.append(f"{role}: keys exist in {keys_dir}, kept (--force replaces them)")
            kept.append(role)
    lines.append(f"authorized client keys: {authorized_dir(keys_dir)}/ (copy *.key there to admit more clients)")
    if added and kept:  # a role added to a folder in use: the binding processes do not know its key yet
        files = " ".join(f"authorized/{role}.key" for role in added)
        lines.append(
            f"added {', '.join(added)} beside existing keys: copy {files} to the hosts that run "
            f"{', '.join(SERVER_ROLES)} and restart those processes (they read authorized/ at start)"
        )
    return lines


def check(keys_dir: Path, roles: Sequence[str]) -> list[str]:
    """One line per problem for a host running `roles` (an empty list: all good).

    It needs each role's keypair, the public keys of the roles that bind endpoints and,
    if it runs one of those, the authorized keys folder.
    """
    problems = []
    for role in roles:
        try:
            public, _ = read_secret_key(secret_key_path(keys_dir, role))
            if read_public_key(public_key_path(keys_dir, role)) != public:
                problems.append(f"{public_key_path(keys_dir, role)}: does not match {role}.key_secret")
        except KeyFileError as exc:
            problems.append(str(exc))
    for server in SERVER_ROLES:  # every process connects to some of them
        try:
            read_public_key(public_key_path(keys_dir, server))
        except KeyFileError as exc:
            problems.append(str(exc))
    if any(role in SERVER_ROLES for role in roles):
        try:
            read_authorized(authorized_dir(keys_dir))
        except KeyFileError as exc:
            problems.append(str(exc))
    return list(dict.fromkeys(problems))


OPTIONS: list[Option] = [(("--config",), {"help": "TOML file whose security.keys_dir is the default folder"})]


def build_parser() -> argparse.ArgumentParser:
    """`--config` works before and after the subcommand."""
    p = command_parser("tickmesh-keys", "CURVE keys for the mesh's zmq tcp links.", OPTIONS)
    common = subcommand_parent("tickmesh-keys", OPTIONS)
    subs = p.add_subparsers(dest="command", required=True)
    for name, doc in (
        ("create", "write a keypair per role (secret files 0600) and authorize their public keys"),
        ("check", "check the roles' key files: present, well formed, secret files not world-readable"),
    ):
        sub = subs.add_parser(name, parents=[common], help=doc, description=doc)
        sub.add_argument("--dir", help="key folder (default: $TICKMESH_KEYS_DIR, else security.keys_dir)")
        sub.add_argument("roles", nargs="*", metavar="ROLE", help=f"roles (default: all of {', '.join(ROLES)})")
        if name == "create":
            sub.add_argument("--force", action="store_true", help="replace keys that exist")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        keys_dir = Path(args.dir or load_config(args.config).security.keys_dir)
    except ConfigError as exc:
        print(f"tickmesh-keys: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    unknown = [r for r in args.roles if r not in ROLES]
    if unknown:
        print(f"tickmesh-keys: unknown role {', '.join(unknown)} (roles: {', '.join(ROLES)})", file=sys.stderr)
        return EXIT_USAGE
    roles = args.roles or list(ROLES)
    if args.command == "create":
        try:
            print("\n".join(create(keys_dir, roles, force=args.force)))
        except OSError as exc:
            print(f"tickmesh-keys: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    problems = check(keys_dir, roles)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"{keys_dir}: keys of {', '.join(roles)} are in order")
    return EXIT_FAILURE if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
