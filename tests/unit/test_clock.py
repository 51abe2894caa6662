"""Clock offsets from status reports: the arithmetic, what control reports, and what tickmesh-admin flags."""

from __future__ import annotations

import msgspec

from control.clock import SAMPLES, ClockOffset, skewed
from control.convert import snapshot_message
from control.state import MeshState
from control.tables import clock_skew
from tests.unit.test_control_state import T0, S, status
from tickmesh.config import Config

MS = 1_000_000


def test_the_fastest_report_bounds_the_offset_from_below() -> None:
    clock = ClockOffset()
    assert clock.offset_ns == 0  # nothing heard yet
    # a process 250 ms ahead of control; its reports take 1 ms, 40 ms (a busy loop) and 5 ms to arrive
    for transit in (1, 40, 5):
        sent = T0 + 250 * MS  # its clock when the report left
        clock.add(sent, T0 + transit * MS)
    assert clock.offset_ns == 249 * MS  # too low by the shortest transit, never too high


def test_old_reports_are_forgotten_so_a_stepped_clock_shows() -> None:
    clock = ClockOffset()
    clock.add(T0 + 500 * MS, T0)  # 500 ms ahead, then NTP steps it back to 0
    for _ in range(SAMPLES):
        clock.add(T0, T0 + MS)
    assert clock.offset_ns == -MS


def test_skew_is_measured_from_the_router_else_from_control() -> None:
    offsets = [("router", 300.0), ("aggregator", 310.0), ("worker.tick.0", 90.0)]
    assert skewed(offsets) == {"worker.tick.0": -210.0}  # a shared offset from control is no skew
    assert skewed([("aggregator", 150.0), ("worker.tick.0", -20.0)]) == {"aggregator": 150.0}


def test_control_reports_each_processs_offset_and_the_admin_flags_the_skewed_one() -> None:
    mesh = MeshState(Config())
    for n in range(3):
        now = T0 + n * S
        mesh.apply_status(msgspec.structs.replace(status("router"), time_ns=now), now + 2 * MS)
        mesh.apply_status(msgspec.structs.replace(status("worker.tick.0"), time_ns=now + 400 * MS), now + 2 * MS)
    snap = snapshot_message(mesh.view(T0 + 2 * S))
    offsets = {p.process: p.clock_offset_ms for p in snap.processes}
    assert offsets == {"router": -2.0, "worker.tick.0": 398.0}
    assert clock_skew(snap) == "worker.tick.0 +400 ms from the router"


def test_a_restarted_process_starts_a_new_estimate() -> None:
    mesh = MeshState(Config())
    mesh.apply_status(msgspec.structs.replace(status("aggregator", pid=1), time_ns=T0 + 900 * MS), T0)
    mesh.apply_status(msgspec.structs.replace(status("aggregator", pid=2), time_ns=T0 + S), T0 + S)
    (p,) = mesh.processes(T0 + S)
    assert p.clock_offset_ns == 0
    assert clock_skew(snapshot_message(mesh.view(T0 + S))) == ""
