"""`tickmesh-subscribe --since`: history from the journal, then live, joined at a busy moment with no gap and
no duplicate; bad input refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from tests.conftest import JournalBackend
from tests.integration.journal_helpers import journal_mesh, record_publications, start_journal
from tests.integration.test_journal import paced_push
from tests.integration.test_reliability import _highs
from tests.mesh import Mesh, poll_until

TICKERS, STEPS = 400, 80  # 400 × 79 = 31,600 new highs (and nothing else: 158 s of data, short of a trend)
SEAM = re.compile(r"seam: history up to seq (\d+)")
RATE = 8_000  # records (so events) per second: the stream lasts about 5 s, the late subscriber joins inside it


@pytest.mark.timeout(180)
def test_since_joins_history_and_live_without_gap_or_duplicate(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend, aggregator={"replay_size": 50_000})
    recorder = record_publications(mesh)
    start_journal(mesh, "journal")
    total = TICKERS * (STEPS - 1)
    pushing = threading.Thread(target=paced_push, args=(mesh, _highs(TICKERS, STEPS), RATE, 40))
    pushing.start()
    poll_until(lambda: len(recorder.received) > total // 10, 60, what="the stream to be under way")
    late = subprocess.run(
        [sys.executable, "-m", "subscriber", "--config", str(mesh.config_path), "--since", "2000-01-01", "--json",
         "--count", str(total)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **mesh.env}, cwd=mesh.dir,
    )  # fmt: skip
    pushing.join()
    poll_until(lambda: len(recorder.received) >= total, 30, what="the reference subscriber")
    recorder.close()
    assert late.returncode == 0, late.stderr
    shown = [json.loads(line) for line in late.stdout.splitlines()]
    seam = int(SEAM.search(late.stderr)[1])  # type: ignore[index]
    assert 0 < seam < total - 1_000, f"the seam (seq {seam}) was not inside the stream"
    assert [e["seq"] for e in shown] == list(range(1, total + 1)), "a gap or a duplicate at the seam"
    assert [e["id"] for e in shown] == [p.event.id for p in recorder.received]
    rate = total / max(1e-9, (recorder.received[-1].published_ns - recorder.received[0].published_ns) / 1e9)
    print(f"seam test: {total} events at {rate:,.0f} events/s, seam after seq {seam}")


def test_since_with_bad_input_is_a_clear_error(
    mesh_factory: Callable[..., Mesh], journal_backend: JournalBackend
) -> None:
    mesh = journal_mesh(mesh_factory, journal_backend)
    start_journal(mesh, "journal")
    for since, message in (("next week", "since: 'next week' is not a time"), ("2200-01-01", "outside 1980")):
        late = subprocess.run(
            [sys.executable, "-m", "subscriber", "--config", str(mesh.config_path), "--since", since],
            capture_output=True, text=True, timeout=30, env={**os.environ, **mesh.env}, cwd=mesh.dir,
        )  # fmt: skip
        assert late.returncode == 2 and message in late.stderr and "Traceback" not in late.stderr
