"""Scheduling settings: validated where they are read, and a host that cannot pin says so once and carries on."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tickmesh import sched
from tickmesh.config import ConfigError, load_config


def test_scheduling_is_off_by_default_and_validated_with_the_key_named(tmp_path: Path) -> None:
    process = load_config(None, env={}).process
    assert (process.realtime, process.realtime_priority, process.cpus.router, process.cpus.tick) == (False, 10, (), ())
    path = tmp_path / "t.toml"
    path.write_text("[process]\nrealtime = true\nrealtime_priority = 5\n[process.cpus]\nrouter = [0]\ntick = [1, 0]\n")
    process = load_config(str(path), env={}).process
    assert (process.realtime, process.realtime_priority, process.cpus.router, process.cpus.tick) == (
        True,
        5,
        (0,),
        (1, 0),
    )
    for text, key in (
        ("[process]\nrealtime_priority = 50\n", r"<= 49.*process\.realtime_priority"),  # not above interrupt threads
        ("[process]\nrealtime_priority = 0\n", r"process\.realtime_priority"),
        ("[process.cpus]\njournal = [0]\n", r"journal.*process\.cpus"),
        ("[process.cpus]\nrouter = [-1]\n", r"process\.cpus\.router"),
        ("[process.cpus]\nrouter = 0\n", r"process\.cpus\.router"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=key):
            load_config(str(path), env={})


def test_cpus_the_host_lacks_log_one_line_and_leave_the_affinity_alone(caplog: pytest.LogCaptureFixture) -> None:
    before = os.sched_getaffinity(0)
    with caplog.at_level(logging.INFO, logger="tickmesh.sched"):
        assert sched.pin({4_095}) is False
        assert sched.pin(set(before)) is True  # what it runs on already: a real call that changes nothing
    assert os.sched_getaffinity(0) == before
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot run on CPUs [4095]" in warnings[0], warnings


def test_cpu_latency_is_off_by_default_and_where_the_host_refuses_it_one_line_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_config(None, env={}).process.cpu_latency_us is None  # the host decides how deep CPUs sleep
    path = tmp_path / "t.toml"
    path.write_text("[process]\ncpu_latency_us = 0\n")
    assert load_config(str(path), env={}).process.cpu_latency_us == 0
    path.write_text("[process]\ncpu_latency_us = -1\n")
    with pytest.raises(ConfigError, match=r">= 0.*process\.cpu_latency_us"):
        load_config(str(path), env={})
    monkeypatch.setattr(sched, "CPU_LATENCY", str(tmp_path / "no-such-dir" / "cpu_dma_latency"))
    with caplog.at_level(logging.INFO, logger="tickmesh.sched"):
        assert sched.cpu_latency(0) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot hold CPU wake-up latency at 0 µs" in warnings[0], warnings


def test_time_slices_are_off_by_default_and_where_the_host_cannot_one_line_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_config(None, env={}).process.slice_us is None  # the kernel's slice
    path = tmp_path / "t.toml"
    path.write_text("[process]\nslice_us = 100\n")
    assert load_config(str(path), env={}).process.slice_us == 100
    for text, key in (("slice_us = 99", r">= 100.*process\.slice_us"), ("slice_us = 100001", r"<= 100000.*slice_us")):
        path.write_text(f"[process]\n{text}\n")  # the kernel's own bounds: 0.1–100 ms
        with pytest.raises(ConfigError, match=key):
            load_config(str(path), env={})
    monkeypatch.setattr(sched, "SCHED_ATTR_CALLS", {})  # an architecture without known syscall numbers
    with caplog.at_level(logging.INFO, logger="tickmesh.sched"):
        assert sched.time_slice(100) is False
        assert sched.slice_ns(0) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot run in 100 µs time slices (no sched_setattr number" in warnings[0], warnings
