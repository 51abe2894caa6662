"""Where every socket lives: the default loopback endpoints, in one place.

| name            | bound by   | type        | purpose                                   |
|-----------------|------------|-------------|-------------------------------------------|
| ingest          | router     | PULL        | producers PUSH records here               |
| sync            | router     | REP         | producers ask whether their mark was routed |
| acks            | router     | PULL        | workers report what they processed        |
| tick/ohlcv/fmv  | router     | PUSH        | one socket per shard: base port + shard   |
| events          | aggregator | PULL        | workers PUSH detected events              |
| publish         | aggregator | XPUB        | subscribers SUB here                      |
| replay          | aggregator | ROUTER      | subscribers ask for missed events         |
| control_config  | control    | PUB         | versioned config to every process         |
| control_status  | control    | PULL        | metrics, heartbeats and config acks       |
| grpc            | control    | gRPC        | the admin API                             |
| prometheus      | control    | HTTP        | metrics in the Prometheus text format     |
"""

from __future__ import annotations

from msgspec import Struct


class Endpoints(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ingest: str = "tcp://127.0.0.1:5550"
    sync: str = "tcp://127.0.0.1:5551"
    acks: str = "tcp://127.0.0.1:5552"
    tick: str = "tcp://127.0.0.1:5600"
    ohlcv: str = "tcp://127.0.0.1:5700"
    fmv: str = "tcp://127.0.0.1:5800"
    events: str = "tcp://127.0.0.1:5590"
    publish: str = "tcp://127.0.0.1:5591"
    replay: str = "tcp://127.0.0.1:5592"
    control_config: str = "tcp://127.0.0.1:5595"
    control_status: str = "tcp://127.0.0.1:5596"
    grpc: str = "127.0.0.1:50051"
    prometheus: str = "127.0.0.1:9108"

    def shard(self, channel: str, shard: int) -> str:
        """The endpoint of one shard of a channel: tcp port + shard, or ipc path + -shard."""
        base: str = getattr(self, channel)
        if base.startswith("tcp://"):
            host, _, port = base[len("tcp://") :].rpartition(":")
            return f"tcp://{host}:{int(port) + shard}"
        return f"{base}-{shard}"
