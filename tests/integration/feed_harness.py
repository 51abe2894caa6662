"""For feed tests: a stand-in router that keeps what it receives, and feed processes that are always stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import msgspec
import zmq

from tickmesh.schema import Mark, MarkQuery, Record, ingest_decoder, mark_query_decoder
from tickmesh.sockets import make_socket

ROOT = Path(__file__).resolve().parents[2]


class FakeRouter:
    """The router's ingest contract only: PULL records, answer mark queries on REP (b"1" once routed)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tmf-"))  # ipc paths must stay short
        self.ingest, self.sync = f"ipc://{self.dir}/ingest", f"ipc://{self.dir}/sync"
        self.records: list[Record] = []
        self.marks: dict[str, int] = {}
        self.messages = 0
        self.bad_frames = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        ctx = zmq.Context()
        pull = make_socket(ctx, zmq.PULL, bind=self.ingest, hwm=10_000)
        rep = make_socket(ctx, zmq.REP, bind=self.sync, hwm=100)
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(rep, zmq.POLLIN)
        self._ready.set()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(50))
                while pull in ready and pull.poll(0):
                    self._take(pull.recv())
                if rep in ready:
                    query: MarkQuery = mark_query_decoder.decode(rep.recv())
                    rep.send(b"1" if self.marks.get(query.producer, -1) >= query.n else b"0")
        finally:
            pull.close(0)
            rep.close(0)
            ctx.term()

    def _take(self, frame: bytes) -> None:
        self.messages += 1
        try:
            items = ingest_decoder.decode(frame)
        except msgspec.ValidationError:
            self.bad_frames += 1
            return
        for item in items:
            if isinstance(item, Mark):
                self.marks[item.producer] = item.n
            else:
                self.records.append(item)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Feed:
    """One `python -m feeds …` process with its output in a file; `stop` / `close` always end it."""

    def __init__(
        self,
        workdir: Path,
        router: FakeRouter | None,
        *args: str,
        env: dict[str, str] | None = None,
        config: str | None = None,
    ) -> None:
        self.out = workdir / f"feed-{id(self)}.log"
        endpoints = ["--ingest", router.ingest, "--sync", router.sync] if router else []
        extra = ["--config", config] if config else []
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
        clean.update(env or {}, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        with open(self.out, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "feeds", *extra, *endpoints, *args],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean,
            )

    def log(self) -> str:
        return self.out.read_text(errors="replace")

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM; the exit code. `timeout` guards against a hang (honcho's 5 s is test_honcho's)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the feed did not stop in {timeout} s; its log:\n{self.log()[-6000:]}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
