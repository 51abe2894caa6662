"""`tickmesh-feed replay` as a user runs it on the files people have: pandas CSVs, monthly bars, mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.feed_harness import ROOT, FakeRouter
from tickmesh.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tickmesh.schema import Bar

DAY = 86_400 * 10**9
JAN_2 = 1_704_153_600 * 10**9  # 2024-01-02 00:00 UTC
# Exactly what pandas writes for a date-indexed frame: `df.to_csv("AAPL.csv")` (the index has no name).
PANDAS_DAILY = """,Open,High,Low,Close,Adj Close,Volume
2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700
2024-01-03,184.22,185.88,183.43,184.25,183.55,58414500
2024-01-04,182.15,183.09,180.88,181.91,181.22,71983600
"""
PANDAS_INTRADAY = """,open,high,low,close,volume
2024-01-02 14:30:00+00:00,187.15,187.40,186.90,187.20,120000
2024-01-02 14:35:00+00:00,187.20,187.60,187.00,187.50,90000
"""
MONTHLY = """Date,Open,High,Low,Close,Volume
2024-01-01,100,110,95,105,1000000
2024-02-01,105,112,101,110,900000
2024-03-01,110,115,104,108,950000
"""
WITH_TICKERS = """Date,Symbol,Open,High,Low,Close,Volume
2024-01-02,AAA,10,11,9,10.5,1000
2024-01-02,BBB,20,21,19,20.5,2000
"""


@pytest.fixture
def router() -> Iterator[FakeRouter]:
    r = FakeRouter()
    yield r
    r.close()


def replay(router: FakeRouter, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `tickmesh-feed replay … --json`; stdout is the summary, stderr the log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "feeds", "replay", *args, "--json", "--ingest", router.ingest, "--sync", router.sync]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd, env=env)


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if " ERROR " in line]


def test_a_pandas_csv_with_its_unnamed_date_index_is_recognised(router: FakeRouter, tmp_path: Path) -> None:
    (tmp_path / "AAPL.csv").write_text(PANDAS_DAILY)
    (tmp_path / "intraday.csv").write_text(PANDAS_INTRADAY)
    done = replay(router, tmp_path, "AAPL.csv", "intraday.csv", "--ticker", "AAPL")
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["sent"] == 5 and not errors(done)
    bars = [r for r in router.records if isinstance(r, Bar)]
    assert [(b.start, b.end, b.close) for b in bars[:3]] == [
        (JAN_2 + k * DAY, JAN_2 + (k + 1) * DAY, close) for k, close in enumerate((185.64, 184.25, 181.91))
    ]
    assert bars[3].start == JAN_2 + (14 * 60 + 30) * 60 * 10**9 and bars[3].end - bars[3].start == 300 * 10**9
    forced = replay(router, tmp_path, "AAPL.csv", "--format", "ohlcv", "--ticker", "AAPL")
    assert forced.returncode == EXIT_OK and json.loads(forced.stdout)["sent"] == 3, forced.stderr


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        ("a,b,c\n1,2,3\n", [], "give --format"),
        (PANDAS_DAILY, [], "give --ticker SYMBOL"),
        ("Open,High,Low,Close,Volume\n1,2,0.5,1.5,10\n", ["--ticker", "X", "--format", "ohlcv"], "name it one of"),
        ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n", ["--ticker", "X"], "missing column(s) volume"),
    ],
    ids=["unknown-header", "no-ticker", "no-time-column", "no-volume"],
)
def test_a_file_it_cannot_read_is_one_line_naming_file_line_and_fix(
    router: FakeRouter, tmp_path: Path, content: str, args: list[str], says: str
) -> None:
    (tmp_path / "bad.csv").write_text(content)
    (tmp_path / "good.csv").write_text(WITH_TICKERS)
    done = replay(router, tmp_path, "bad.csv", "good.csv", *args)
    assert done.returncode == EXIT_USAGE
    (line,) = errors(done)
    assert "bad.csv:1: " in line and says in line, line
    summary = json.loads(done.stdout)
    assert summary["sent"] == 2 and summary["failed_files"][0].startswith("bad.csv:1: ")


def test_usage_errors_still_print_the_summary(router: FakeRouter, tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(MONTHLY)
    for bad in (["--interval", "monthly"], ["--speed", "fast"]):
        done = replay(router, tmp_path, "m.csv", "--ticker", "M", *bad)
        assert done.returncode == EXIT_USAGE and len(errors(done)) == 1 and bad[0] in errors(done)[0]
        assert json.loads(done.stdout)["sent"] == 0
    missing = replay(router, tmp_path, "nope.csv")
    assert missing.returncode == EXIT_FAILURE and json.loads(missing.stdout)["files"] == 0


def test_interval_is_honoured_for_date_only_rows_and_a_wide_gap_is_not_silent(
    router: FakeRouter, tmp_path: Path
) -> None:
    (tmp_path / "m.csv").write_text(MONTHLY)
    done = replay(router, tmp_path, "m.csv", "--ticker", "M", "--interval", "30d")
    assert done.returncode == EXIT_OK, done.stderr
    assert [b.end - b.start for b in router.records if isinstance(b, Bar)] == [30 * DAY] * 3
    plain = replay(router, tmp_path, "m.csv", "--ticker", "M")
    assert plain.returncode == EXIT_OK
    assert "give --interval (e.g. 29d)" in plain.stderr and "one-day bars" in plain.stderr
