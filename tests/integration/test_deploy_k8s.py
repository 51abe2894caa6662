"""deploy/k8s: the manifest's shape, and its containers' exact commands run locally on loopback with CURVE."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from honcho.manager import KILL_WAIT

from subscriber.client import Subscriber, as_dict
from tests.integration.k8s_pods import Cluster, of_kind, pod_spec
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
    (c,) = pod_spec(SETS[name])["containers"]
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


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_pod_runs_a_console_script_with_private_secrets_and_the_stop_grace(name: str) -> None:
    spec, c = pod_spec(SETS[name]), container(name)
    assert c["command"][0] in console_scripts()
    assert spec["terminationGracePeriodSeconds"] == KILL_WAIT
    (secret,) = [v["secret"] for v in spec["volumes"] if "secret" in v]
    assert secret["defaultMode"] in (0o400, 0o440)  # what tickmesh accepts, and Kubernetes' 0644 is not
    secrets = [i["key"] for i in secret["items"] if i["key"].endswith(".key_secret")]
    role = "worker" if c["command"] == ["tickmesh-shard"] else name.removeprefix("tickmesh-")
    assert secrets == [f"{role}.key_secret"]  # only its own role's secret key
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    binds = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    for probe, path in ((c["livenessProbe"], "/livez"), (c["readinessProbe"], "/readyz")):
        port = probe["httpGet"]["port"]
        assert (port, probe["httpGet"]["path"]) == ("health", path)
        # a probe names a port the process binds, on all interfaces
        assert binds[f"TICKMESH_{port.upper()}"].endswith(f"0.0.0.0:{ports[port]}")


def test_the_manifests_containers_come_up_and_deliver_events(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    keys.create(secret, list(ROLES))  # kubectl create secret generic tickmesh-keys --from-file=secret/
    cluster = Cluster(tmp_path, secret, write_launchers(tmp_path / "bin"))
    try:
        for s in SETS.values():
            for ordinal in range(s["spec"]["replicas"]):
                cluster.start(s, ordinal)
        for pod in cluster.procs:
            c = container(pod.rpartition("-")[0])
            for probe in (c["livenessProbe"], c["readinessProbe"]):  # every pod has both, on --health
                assert probe["httpGet"]["port"] == "health"
                poll_until(partial(passes, probe, cluster, pod), 30, what=f"{pod}'s probe {probe}")
        check_processes_report(cluster)
        check_events_flow(cluster)
        check_journaled(cluster)
    finally:
        cluster.stop()
    codes = {name: proc.returncode for name, proc in cluster.procs.items()}
    assert set(codes.values()) == {0}, {n: cluster.log(n)[-2000:] for n, c in codes.items() if c}


def passes(probe: dict[str, Any], cluster: Cluster, pod: str) -> bool:
    for name, proc in cluster.procs.items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{cluster.log(name)}"
    url = f"http://127.0.0.1:{cluster.health[pod]}{probe['httpGet']['path']}"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:  # HTTPError (a 503) included
        return False


def check_processes_report(cluster: Cluster) -> None:
    """`tickmesh-admin metrics` in the control pod lists every process live (its token is in the pod's state)."""
    env = dict(os.environ, TICKMESH_CONFIG=str(cluster.config_file))
    env["TICKMESH_STATE_DIR"] = str(cluster.root / "tickmesh-control-0" / "state")
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
