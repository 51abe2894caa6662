"""Where every socket lives: the default endpoints, in one place.

| name            | bound by   | type   | who may connect | purpose                                      |
|-----------------|------------|--------|-----------------|----------------------------------------------|
| ingest          | router     | PULL   | public          | producers PUSH records here                  |
| sync            | router     | REP    | public          | producers ask whether their mark was routed  |
| acks            | router     | PULL   | mesh (private)  | workers report what they processed           |
| tick/ohlcv/fmv  | router     | PUSH   | mesh (private)  | one socket per shard: port + shard, path-N   |
| events          | aggregator | PULL   | mesh (private)  | workers PUSH detected events                 |
| publish         | aggregator | XPUB   | public          | subscribers SUB here                         |
| replay          | aggregator | ROUTER | public          | subscribers ask for missed events            |
| control_config  | control    | PUB    | mesh (private)  | versioned config to every process            |
| control_status  | control    | PULL   | mesh (private)  | metrics, heartbeats and config acks          |
| grpc            | control    | gRPC   | token           | the admin API                                |
| prometheus      | control    | HTTP   | public          | metrics in the Prometheus text format        |

With `[router] count` N > 1, router i (from 1) has its own ingest, sync, acks and
shard endpoints, derived from these (`Endpoints.for_router`): tcp port + 100 × i,
ipc path + `-r<i>`; router 0 keeps these.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

# The links between mesh processes are private: by default unix sockets in a folder only the mesh's
# user can enter (0700, under the state root; docs/security.md). The public sockets are loopback tcp.
RUN_DIR = ".tickmesh/run"
INTERNAL: tuple[str, ...] = ("acks", "tick", "ohlcv", "fmv", "events", "control_config", "control_status")
ROUTED: tuple[str, ...] = ("ingest", "sync", "acks", "tick", "ohlcv", "fmv")  # each router has its own
ROUTER_PORT_STEP = 100  # router i's tcp endpoints: the base port + this × i


class Endpoints(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ingest: str = "tcp://127.0.0.1:5550"
    sync: str = "tcp://127.0.0.1:5551"
    acks: str = f"ipc://{RUN_DIR}/acks"
    tick: str = f"ipc://{RUN_DIR}/tick"
    ohlcv: str = f"ipc://{RUN_DIR}/ohlcv"
    fmv: str = f"ipc://{RUN_DIR}/fmv"
    events: str = f"ipc://{RUN_DIR}/events"
    publish: str = "tcp://127.0.0.1:5591"
    replay: str = "tcp://127.0.0.1:5592"
    control_config: str = f"ipc://{RUN_DIR}/control-config"
    control_status: str = f"ipc://{RUN_DIR}/control-status"
    grpc: str = "127.0.0.1:50051"
    prometheus: str = "127.0.0.1:9108"

    def shard(self, channel: str, shard: int) -> str:
        """The endpoint of one shard of a channel: tcp port + shard, or ipc path + -shard."""
        base: str = getattr(self, channel)
        if base.startswith("tcp://"):
            host, _, port = base[len("tcp://") :].rpartition(":")
            return f"tcp://{host}:{int(port) + shard}"
        return f"{base}-{shard}"

    def for_router(self, index: int) -> Endpoints:
        """Router `index`'s endpoints: the base ones for router 0; for router i, each of ROUTED
        moved to tcp port + ROUTER_PORT_STEP × i, or ipc path + `-r<i>`."""
        if index == 0:
            return self
        return msgspec.structs.replace(self, **{n: _router_offset(getattr(self, n), index) for n in ROUTED})


def _router_offset(endpoint: str, index: int) -> str:
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://") :].rpartition(":")
        return f"tcp://{host}:{int(port) + ROUTER_PORT_STEP * index}"
    return f"{endpoint}-r{index}"
