"""Run deploy/k8s's containers as local processes: their exact commands, their mounts as folders, loopback tcp."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.mesh import ROOT, free_port
from tickmesh.config import CHANNELS, to_toml
from tickmesh.endpoints import Endpoints

MANIFEST = ROOT / "deploy" / "k8s" / "tickmesh.yaml"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
ADMIN_SECRET = {"name": "tickmesh-admin", "key": "token"}  # kubectl create secret generic tickmesh-admin ...


def manifest() -> list[dict[str, Any]]:
    with open(MANIFEST) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifest() if d["kind"] == kind}


def pod_spec(statefulset: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = statefulset["spec"]["template"]["spec"]
    return spec


def loopback_endpoints(shards: dict[str, int]) -> dict[str, str]:
    """Every endpoint on a free loopback port (a channel's base port has `shards` free ports from it)."""
    out = {}
    for name in Endpoints.__struct_fields__:
        port = free_ports(shards.get(name, 1))
        out[name] = f"127.0.0.1:{port}" if name in ("grpc", "prometheus") else f"tcp://127.0.0.1:{port}"
    return out


def free_ports(count: int) -> int:
    """A port p with p … p + count - 1 free now."""
    while True:
        base = free_port()
        try:
            for offset in range(1, count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue


@dataclass
class Cluster:
    """The manifest's ConfigMap and Secrets as local folders; each pod's containers started as processes in `root`.

    A pod's first container runs as the pod's name (`tickmesh-tick-1`), any other as `<pod>.<container>`
    (`tickmesh-control-0.web`); the containers of a pod share its volumes, as in Kubernetes.
    """

    root: Path
    keys: Path  # every key `tickmesh-keys create` wrote: the Secret's data, flat
    bin_dir: Path  # console-script launchers
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # Secret tickmesh-admin's
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)  # process → its container's spec
    ports: dict[str, dict[str, int]] = field(default_factory=dict)  # process → {port name: its port here}

    def __post_init__(self) -> None:
        toml = of_kind("ConfigMap")["tickmesh-config"]["data"]["tickmesh.toml"]
        config = tomllib.loads(toml)
        self.shards = {ch: config.get("channels", {}).get(ch, {}).get("shards", 1) for ch in CHANNELS}
        self.endpoints = loopback_endpoints(self.shards)
        # the manifest's settings, on loopback: CURVE stays on, as it is across pods
        config["endpoints"] = self.endpoints
        config.setdefault("security", {})["curve"] = "on"
        self.config_file = self.root / "tickmesh.toml"
        self.config_file.write_text(to_toml(config))

    def start(self, statefulset: dict[str, Any], ordinal: int) -> list[str]:
        """Start each of the pod's containers as a process; their names."""
        pod = f"{statefulset['metadata']['name']}-{ordinal}"
        spec = pod_spec(statefulset)
        folder = self.root / pod
        names = []
        for i, container in enumerate(spec["containers"]):
            name = pod if i == 0 else f"{pod}.{container['name']}"
            self.run(name, container, ordinal, self.mount(spec, container, folder))
            names.append(name)
        return names

    def run(self, name: str, container: dict[str, Any], ordinal: int, mounts: dict[str, Path]) -> None:
        env = dict(os.environ, PATH=f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")
        served = {p["containerPort"]: p["name"] for p in container.get("ports", [])}
        self.ports[name] = {}
        for var in container.get("env", []):
            env[var["name"]] = value = self.value(var, ordinal, mounts)
            host, _, port = value.rpartition(":")
            if host == "0.0.0.0" and port.isdigit() and int(port) in served:  # served on the pod's own IP:
                self.ports[name][served[int(port)]] = local = free_port()  # here, a port of its own
                env[var["name"]] = f"{'127.0.0.1' if var['name'] == 'TICKMESH_HEALTH' else host}:{local}"
        command = [expand(arg, env) for arg in container["command"] + container.get("args", [])]
        assert shutil.which(command[0], path=str(self.bin_dir)), f"{command[0]} is not a console script"
        work = self.root / name / "cwd"
        work.mkdir(parents=True)
        self.containers[name] = container
        with open(self.root / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=log)

    def mount(self, spec: dict[str, Any], container: dict[str, Any], folder: Path) -> dict[str, Path]:
        """mountPath → a local path holding what the volume would hold."""
        volumes = {v["name"]: v for v in spec["volumes"]}
        out = {}
        for m in container["volumeMounts"]:
            claim = m["name"] not in volumes  # a volumeClaimTemplate: an empty folder per pod
            local = folder / m["name"]
            if claim:  # shared by the pod's containers
                local.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volumes[m["name"]]:
                assert m.get("subPath") == "tickmesh.toml"
                local = self.config_file
            else:
                secret = volumes[m["name"]]["secret"]
                for item in secret["items"]:
                    target = local / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(self.keys / item["key"], target)
                    target.chmod(secret["defaultMode"])
            out[m["mountPath"]] = local
        return out

    def value(self, var: dict[str, Any], ordinal: int, mounts: dict[str, Path]) -> str:
        if "valueFrom" in var:
            if "secretKeyRef" in var["valueFrom"]:
                assert var["valueFrom"]["secretKeyRef"] == ADMIN_SECRET
                return self.admin_token
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX
            return str(ordinal)
        endpoint = var["name"].removeprefix("TICKMESH_").lower()
        if var["name"].startswith("TICKMESH_") and endpoint in self.endpoints:
            return self.endpoints[endpoint]  # a binding pod's own 0.0.0.0 address → its loopback one
        value: str = var["value"]
        for path, local in mounts.items():
            if value == path or value.startswith(path + "/"):
                return str(local) + value[len(path) :]
        return value

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` substitution in command and args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)
