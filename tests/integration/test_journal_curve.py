"""The journal on a mesh whose every zmq link is tcp with CURVE on, keys made by `tickmesh-keys create`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from tests.integration.journal_helpers import QUIET, start_journal
from tests.integration.test_reliability import _highs
from tests.mesh import Mesh, free_port, poll_until
from tickmesh.cli import EXIT_AUTH
from tickmesh.config import to_toml
from tickmesh.curve import secure_context
from tickmesh.endpoints import Endpoints
from tickmesh.producer import Producer
from tickmesh.security import ROLES

HIGHS = 100  # _highs(20, 6): 20 tickers × 5 new highs


def keys_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`tickmesh-keys` of this tree (`python -m`, the module the console script runs)."""
    return subprocess.run([sys.executable, "-m", "tickmesh.keys", *args], capture_output=True, text=True, timeout=30)


def tcp_endpoints() -> dict[str, str]:
    """Every zmq endpoint on a free loopback tcp port (one shard per channel: a shard uses base + index)."""
    return {
        name: f"tcp://127.0.0.1:{free_port()}"
        for name in Endpoints.__struct_fields__
        if name not in ("grpc", "prometheus")
    }


def web_stats(address: str) -> dict[str, Any] | None:
    """tickmesh-web's /api/stats (`received`: events its tape read), or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{address}/api/stats", timeout=5) as answer:
            return cast(dict[str, Any], json.loads(answer.read()))
    except OSError:
        return None


def security_failures(counters: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if k.startswith(("security.handshake_failed", "security.denied"))}


def test_the_journal_stores_every_event_over_curve(mesh_factory: Callable[..., Mesh], tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    made = keys_cli("create", "--dir", str(keys_dir))
    assert made.returncode == 0, made.stderr
    journal_file = tmp_path / "journal.sqlite3"
    mesh = mesh_factory({
        **QUIET,
        "endpoints": tcp_endpoints(),
        "security": {"curve": "on", "keys_dir": str(keys_dir)},
        "journal": {"backend": "sqlite", "path": str(journal_file)},
    }).start()  # fmt: skip
    health, web = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    start_journal(mesh, "journal", "--health", health)
    mesh.spawn("web", "-m", "web", "--listen", web)  # tickmesh-web reads the same streams with the subscriber key
    poll_until(lambda: web_stats(web) is not None, 20, what="tickmesh-web to serve")

    feed_ctx = secure_context(mesh.config, "feed")
    producer = Producer(feed_ctx, mesh.endpoints)
    try:
        producer.send(_highs(20, 6))
        producer.flush()
    finally:
        producer.close()
        feed_ctx.destroy(linger=0)

    def stored() -> dict[str, int]:
        counters = mesh.read_bus()["journal"].counters
        return counters if counters.get("journal.stored", 0) >= HIGHS else {}

    journal = poll_until(stored, 20, what=f"{HIGHS} events stored by the journal")
    assert journal["journal.stored"] == HIGHS
    assert journal.get("security.handshakes", 0) >= 3  # the bus (config, status) and the publish stream at least
    assert security_failures(journal) == {}
    poll_until(lambda: (web_stats(web) or {}).get("received", 0) >= HIGHS, 20, what=f"{HIGHS} events on the web tape")
    assert security_failures(mesh.counters()) == {}  # router, workers, aggregator: nobody was refused
    with urllib.request.urlopen(f"http://{health}/readyz", timeout=5) as answer:
        assert answer.status == 200

    query = subprocess.run(
        [sys.executable, "-m", "journal.cli", "--config", str(mesh.config_path), "query", "--json", "--limit", "1000"],
        capture_output=True, text=True, timeout=30, cwd=mesh.dir, env=dict(os.environ),
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    rows = [json.loads(line) for line in query.stdout.splitlines()]
    assert sorted(row["seq"] for row in rows) == list(range(1, HIGHS + 1))
    assert {row["kind"] for row in rows} == {"high"}


def folder_contents(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_a_key_folder_made_before_the_journal_role_is_named_and_completed_in_place(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    old_roles = [role for role in ROLES if role != "journal"]  # what `tickmesh-keys create` made before
    assert keys_cli("create", "--dir", str(keys_dir), *old_roles).returncode == 0
    config = tmp_path / "tickmesh.toml"
    config.write_text(to_toml({
        "endpoints": tcp_endpoints(),
        "security": {"curve": "on", "keys_dir": str(keys_dir)},
        "journal": {"backend": "sqlite", "path": str(tmp_path / "journal.sqlite3")},
    }))  # fmt: skip
    refused = subprocess.run(
        [sys.executable, "-m", "journal", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert refused.returncode == EXIT_AUTH, refused.stderr
    assert f"{keys_dir}/journal.key_secret: secret key file missing" in refused.stderr
    assert f"`tickmesh-keys create --dir {keys_dir} journal`" in refused.stderr and "Traceback" not in refused.stderr

    before = folder_contents(keys_dir)
    added = keys_cli("create", "--dir", str(keys_dir))  # every role: the missing one is added, the rest kept
    assert added.returncode == 0, added.stderr
    assert f"journal: wrote {keys_dir}/journal.key_secret (0600)" in added.stdout
    assert "added journal beside existing keys: copy authorized/journal.key" in added.stdout
    after = folder_contents(keys_dir)
    assert {name: after[name] for name in before} == before  # not one byte or mode of an existing key changed
    assert set(after) - set(before) == {"journal.key", "journal.key_secret", "authorized/journal.key"}
    assert stat.S_IMODE(after["journal.key_secret"][1]) == 0o600
    checked = keys_cli("check", "--dir", str(keys_dir), "journal")
    assert checked.returncode == 0, checked.stderr
