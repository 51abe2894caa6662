"""deploy/k8s: the manifest's shape, and its containers' exact commands run locally on loopback with CURVE."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from honcho.manager import KILL_WAIT
from websockets.sync.client import connect

from subscriber.client import Subscriber, as_dict
from tests.integration.k8s_pods import ADMIN_SECRET, Cluster, of_kind, pod_spec
from tests.launchers import console_scripts, write_launchers
from tests.mesh import collect, poll_until
from tickmesh import keys
from tickmesh.config import CHANNELS, load_config
from tickmesh.curve import secure_context
from tickmesh.producer import Producer
from tickmesh.schema import Trade
from tickmesh.security import ROLES

SETS = of_kind("StatefulSet")


def container(name: str) -> dict[str, Any]:
    """The pod's main container (the first; control's pod has the web view's beside it)."""
    c: dict[str, Any] = pod_spec(SETS[name])["containers"][0]
    return c


def test_one_statefulset_per_channel_a_pod_per_shard_each_with_its_own_volume(tmp_path: Path) -> None:
    toml = tmp_path / "tickmesh.toml"
    toml.write_text(of_kind("ConfigMap")["tickmesh-config"]["data"]["tickmesh.toml"])
    config = load_config(str(toml), env={})  # the ConfigMap's file is a valid config
    for channel in CHANNELS:
        s = SETS[f"tickmesh-{channel}"]
        assert s["spec"]["replicas"] == config.channel(channel).shards
        assert [v["metadata"]["name"] for v in s["spec"]["volumeClaimTemplates"]] == ["state"]
        assert container(f"tickmesh-{channel}")["command"] == ["tickmesh-shard"]
    assert set(SETS) == {f"tickmesh-{n}" for n in ("router", "aggregator", "control", "journal", *CHANNELS)}


def mounted_secret(spec: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    """The one Secret volume the container mounts."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    (secret,) = [volumes[m["name"]]["secret"] for m in c["volumeMounts"] if "secret" in volumes.get(m["name"], {})]
    assert secret["defaultMode"] in (0o400, 0o440)  # what tickmesh accepts, and Kubernetes' 0644 is not
    return secret


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_pod_runs_a_console_script_with_private_secrets_and_the_stop_grace(name: str) -> None:
    spec, c = pod_spec(SETS[name]), container(name)
    assert c["command"][0] in console_scripts()
    assert spec["terminationGracePeriodSeconds"] == KILL_WAIT
    secrets = [i["key"] for i in mounted_secret(spec, c)["items"] if i["key"].endswith(".key_secret")]
    role = "worker" if c["command"] == ["tickmesh-shard"] else name.removeprefix("tickmesh-")
    assert secrets == [f"{role}.key_secret"]  # only its own role's secret key
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    binds = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    for probe, path in ((c["livenessProbe"], "/livez"), (c["readinessProbe"], "/readyz")):
        port = probe["httpGet"]["port"]
        assert (port, probe["httpGet"]["path"]) == ("health", path)
        # a probe names a port the process binds, on all interfaces
        assert binds[f"TICKMESH_{port.upper()}"].endswith(f"0.0.0.0:{ports[port]}")


def test_the_web_view_runs_beside_control_with_the_subscriber_key_and_the_admin_token_from_its_secret() -> None:
    spec = pod_spec(SETS["tickmesh-control"])
    assert [c["name"] for c in spec["containers"]] == ["control", "web"]
    control, web = spec["containers"]
    assert web["command"] == ["tickmesh-web"] and web["command"][0] in console_scripts()
    secrets = [i["key"] for i in mounted_secret(spec, web)["items"] if i["key"].endswith(".key_secret")]
    assert secrets == ["subscriber.key_secret"]  # it reads the events as a subscriber, nothing more
    for c in (control, web):  # one token: the one the web view calls control's API with, and asks pages for
        (token,) = [e for e in c["env"] if e["name"] == "TICKMESH_ADMIN_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"] == ADMIN_SECRET
    assert of_kind("ConfigMap")["tickmesh-config"]["data"]["tickmesh.toml"].count('grpc = "127.0.0.1:') == 1
    service = of_kind("Service")["tickmesh-web"]
    assert service["spec"]["selector"] == SETS["tickmesh-control"]["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == web["ports"][0]["containerPort"]


def test_the_manifests_containers_come_up_and_deliver_events(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    keys.create(secret, list(ROLES))  # kubectl create secret generic tickmesh-keys --from-file=secret/
    cluster = Cluster(tmp_path, secret, write_launchers(tmp_path / "bin"))
    try:
        for s in SETS.values():
            for ordinal in range(s["spec"]["replicas"]):
                cluster.start(s, ordinal)
        for name, c in cluster.containers.items():
            for probe in (c["livenessProbe"], c["readinessProbe"]):  # every container has both
                assert probe["httpGet"]["port"] == ("web" if name.endswith(".web") else "health")
                poll_until(partial(passes, probe, cluster, name), 30, what=f"{name}'s probe {probe}")
        check_processes_report(cluster)
        check_events_flow(cluster)
        check_journaled(cluster)
        check_web_view(cluster)
    finally:
        cluster.stop()
    codes = {name: proc.returncode for name, proc in cluster.procs.items()}
    assert set(codes.values()) == {0}, {n: cluster.log(n)[-2000:] for n, c in codes.items() if c}


def passes(probe: dict[str, Any], cluster: Cluster, name: str) -> bool:
    for other, proc in cluster.procs.items():
        assert proc.poll() is None, f"{other} exited with {proc.returncode}:\n{cluster.log(other)}"
    url = f"http://127.0.0.1:{cluster.ports[name][probe['httpGet']['port']]}{probe['httpGet']['path']}"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:  # HTTPError (a 503) included
        return False


def check_processes_report(cluster: Cluster) -> None:
    """`tickmesh-admin metrics` in the control pod lists every process live (the token: the container's env)."""
    env = dict(os.environ, TICKMESH_CONFIG=str(cluster.config_file), TICKMESH_ADMIN_TOKEN=cluster.admin_token)
    shards = (f"worker.{ch}.{s}" for ch, n in cluster.shards.items() for s in range(n))
    wanted = {"router", "aggregator", "journal", *shards}

    def all_live() -> bool:
        admin = [str(cluster.bin_dir / "tickmesh-admin"), "--json", "metrics"]
        done = subprocess.run(admin, env=env, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return False
        live = {p["process"] for p in json.loads(done.stdout).get("processes", []) if p.get("live")}
        return wanted <= live

    poll_until(all_live, 30, interval=0.5, what=f"{sorted(wanted)} live in tickmesh-admin metrics")


def check_events_flow(cluster: Cluster) -> None:
    """A CURVE feed and subscriber (keys of their own roles) see rising trades become highs."""
    config = load_config(str(cluster.config_file), env={"TICKMESH_KEYS_DIR": str(cluster.keys)})
    sub_ctx, feed_ctx = secure_context(config, "subscriber"), secure_context(config, "feed")
    sub = Subscriber(config.endpoints.publish, replay=config.endpoints.replay, ctx=sub_ctx)
    producer = Producer(feed_ctx, config.endpoints)
    try:
        poll_until(lambda: sub.sub.poll(50), 15, what="the first heartbeat")
        now = time.time_ns()
        producer.send([Trade("AAPL", 100.0 + i, 100, now + 2 * i * 1_000_000_000) for i in range(3)])
        producer.flush()
        highs = collect(sub, lambda got: any(as_dict(p)["kind"] == "high" for p in got), timeout=15)
        assert any(as_dict(p)["ticker"] == "AAPL" for p in highs)
    finally:
        producer.close()
        sub.sub.close(0)
        sub_ctx.destroy(linger=0)
        feed_ctx.destroy(linger=0)


def check_journaled(cluster: Cluster) -> None:
    """`tickmesh-events query` in the journal pod finds the high check_events_flow saw published."""
    env = dict(os.environ, TICKMESH_CONFIG=str(cluster.config_file))
    env["TICKMESH_STATE_DIR"] = str(cluster.root / "tickmesh-journal-0" / "state")
    query = [str(cluster.bin_dir / "tickmesh-events"), "query", "--ticker", "AAPL", "--kind", "high", "--json"]

    def stored() -> list[dict[str, Any]]:
        done = subprocess.run(query, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    rows = poll_until(stored, 15, interval=0.2, what="the journal to store AAPL's high")
    assert {row["ticker"] for row in rows} == {"AAPL"}


def check_web_view(cluster: Cluster) -> None:
    """The web container: the page needs the Secret's token; given it, the page gets the AAPL high published
    in check_events_flow (from the aggregator, over CURVE) and the mesh from control's API on the pod's loopback."""
    port = cluster.ports["tickmesh-control-0.web"]["web"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5)
    assert refused.value.code == 401
    with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "locked"}
        ws.send(json.dumps({"type": "hello", "token": cluster.admin_token}))
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while not ("AAPL" in seen.get("tickers", ()) and "mesh" in seen) and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            events = message.get("recent", []) if message["type"] == "hello" else message.get("events", [])
            seen.setdefault("tickers", set()).update(e.get("ticker") for e in events)
            if message["type"] == "mesh" and "error" not in message:
                seen["mesh"] = message
        assert "AAPL" in seen.get("tickers", ()), seen
        assert "mesh" in seen, f"no mesh view from control: {cluster.log('tickmesh-control-0.web')[-2000:]}"
