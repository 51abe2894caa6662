"""`python -m bench.hop`: what one ZeroMQ message costs the process it wakes, on this host.

Every mesh hop is a message from one process to the next, and at low rates each message finds
its receiver asleep: libzmq's I/O thread wakes to read it, then the main thread to take it, and
the reply wakes the I/O thread again. That cost is paid once per message, whatever it carries,
so it sets the mesh's CPU per record at low rates, where the single-process peer pays it once
per ingest frame and the mesh once per hop.

The part: this process sends `messages` small messages over ipc, one at a time, to an echo
process, waits for each echo, and pauses between them so the echo process sleeps before every
message. The echo process reports its own CPU time (all its threads) per message. It runs twice:
both processes wherever the scheduler puts them, then both pinned to one CPU (no cross-CPU wake);
where permitted a third time, anywhere again, with idle CPUs polling instead of sleeping (the
kernel's CPU latency QoS at 0 µs, `[process] cpu_latency_us = 0`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from tickmesh import sched

PAYLOAD = b"x" * 100  # about a small batch's header and one record
TIMEOUT_MS = 5_000


def hop_part(messages: int, pause_s: float = 0.0002) -> dict[str, Any]:
    """The echo's CPU per message and the round trip, with the two processes anywhere and on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    out: dict[str, Any] = {"messages": messages, "pause_us": round(pause_s * 1e6), "payload_bytes": len(PAYLOAD)}
    out["anywhere"] = measure(messages, pause_s, None)
    out["one_cpu"] = measure(messages, pause_s, cpus[0])
    request = sched.cpu_latency(0)  # as `[process] cpu_latency_us = 0` does, where permitted (root)
    if request is not None:
        with request:
            out["idle_cpus_poll"] = measure(messages, pause_s, None)
    return out


def measure(messages: int, pause_s: float, cpu: int | None) -> dict[str, Any]:
    """One run: `messages` round trips to a fresh echo process (both on `cpu` if given)."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before the context: its I/O thread inherits the CPU
    folder = tempfile.mkdtemp(prefix="tmhop-")
    to_echo, back = f"ipc://{folder}/in", f"ipc://{folder}/out"
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    push.setsockopt(zmq.LINGER, 0)
    pull.setsockopt(zmq.LINGER, 0)
    push.bind(to_echo)
    pull.bind(back)
    args = [sys.executable, "-m", "bench.hop", "--echo", to_echo, back, "--messages", str(messages)]
    echo = subprocess.Popen([*args, *(["--cpu", str(cpu)] if cpu is not None else [])], stdout=subprocess.PIPE)
    try:
        rtt_ns = []
        for i in range(messages + 1):  # the first one waits for the echo process to start
            start = time.perf_counter_ns()
            push.send(PAYLOAD)
            if not pull.poll(TIMEOUT_MS if i else 30_000):
                raise RuntimeError(f"bench.hop: no echo for message {i}")
            pull.recv()
            if i:
                rtt_ns.append(time.perf_counter_ns() - start)
            time.sleep(pause_s)
        report, _ = echo.communicate(timeout=30)
    finally:
        if echo.poll() is None:
            echo.kill()
        push.close()
        pull.close()
        ctx.term()
        os.sched_setaffinity(0, before)
        for name in ("in", "out"):
            Path(folder, name).unlink(missing_ok=True)
        os.rmdir(folder)
    rtt_ns.sort()
    result: dict[str, Any] = json.loads(report)
    result["cpu"] = "any" if cpu is None else cpu
    result["round_trip_p50_us"] = round(rtt_ns[len(rtt_ns) // 2] / 1e3, 1)
    result["round_trip_p99_us"] = round(rtt_ns[len(rtt_ns) * 99 // 100] / 1e3, 1)
    return result


def echo(to_echo: str, back: str, messages: int, cpu: int | None) -> int:
    """Send every message back; print the CPU time this process spent per message (JSON)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.connect(to_echo)
    push.connect(back)
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)  # as a mesh process waits: a poll, then a non-blocking read
    push.send(pull.recv())  # the first message: both ends are connected
    start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(messages):
        if not poller.poll(TIMEOUT_MS):
            return 1
        push.send(pull.recv(zmq.NOBLOCK))
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    switches = end.ru_nvcsw - start.ru_nvcsw  # voluntary: each time a thread of it went to sleep
    print(
        json.dumps(
            {
                "cpu_us_per_message": round(cpu_s / messages * 1e6, 1),
                "sleeps_per_message": round(switches / messages, 2),
            }
        )
    )
    push.close(linger=1_000)
    pull.close(0)
    ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__.splitlines()[0])
    p.add_argument("--echo", nargs=2, metavar=("IN", "OUT"), help="be the echo process (the part starts it)")
    p.add_argument("--messages", type=int, default=5_000)
    p.add_argument("--cpu", type=int, default=None)
    args = p.parse_args(argv)
    if args.echo:
        return echo(args.echo[0], args.echo[1], args.messages, args.cpu)
    print(json.dumps(hop_part(args.messages), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
