"""tickmesh-web in a real headless Chromium against a real mesh and a real control process."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select
from websockets.sync.client import connect

from control.v1 import control_pb2 as pb
from control.v1 import control_pb2_grpc as pb_grpc
from tests.integration.test_mesh import scripted
from tests.mesh import ROOT, Mesh, collect, drain, free_port, poll_until
from tickmesh.schema import Record, Trade

TOKEN = "web-test-token-0123456789abcdef"
MD = [("authorization", f"Bearer {TOKEN}")]
S = 1_000_000_000
pytestmark = pytest.mark.slow  # ~10 s: a mesh, control, the journal, tickmesh-web and Chromium


class Web:
    """A mesh, control, tickmesh-web and a headless Chromium showing its page."""

    def __init__(self, mesh: Mesh, url: str, driver: webdriver.Chrome) -> None:
        self.mesh, self.url, self.driver = mesh, url, driver
        self.stub = pb_grpc.ControlStub(grpc.insecure_channel(mesh.endpoints.grpc))

    def rows(self) -> list[dict[str, str]]:
        """The tape's event rows as the page shows them (one script call: no stale elements)."""
        script = """return [...document.querySelectorAll('#tape tbody tr[data-id]')].map(tr => ({
            id: tr.dataset.id, kind: tr.dataset.kind, ticker: tr.dataset.ticker, channel: tr.dataset.channel,
            price: tr.querySelector('.price').textContent, fields: tr.querySelector('.fields').textContent,
            latency: tr.querySelector('.latency').textContent}))"""
        return self.driver.execute_script(script)  # type: ignore[no-any-return]

    def type_into(self, element_id: str, text: str) -> None:
        box = self.driver.find_element(By.ID, element_id)
        box.send_keys(Keys.CONTROL, "a")  # typed away, as a user would (clear() fires no input event)
        box.send_keys(Keys.BACKSPACE)
        if text:
            box.send_keys(text)

    def text(self, css: str) -> str:
        """One element's text, read in one script call (the page redraws its cards every snapshot)."""
        script = "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''"
        return str(self.driver.execute_script(script, css))

    def metrics(self) -> pb.MetricsSnapshot:
        return self.stub.GetMetrics(pb.GetMetricsRequest(), metadata=MD)

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


@pytest.fixture
def web(mesh_factory: Callable[..., Mesh]) -> Iterator[Web]:
    mesh = mesh_factory({"web": {"poll_s": 0.2}})
    mesh.env["TICKMESH_ADMIN_TOKEN"] = TOKEN
    mesh.spawn("control", "-m", "control")
    mesh.start(with_bus=False)
    mesh.spawn("journal", "-m", "journal")  # a ticker's recent events come from it
    port = free_port()
    mesh.spawn("web", "-m", "web", "--listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/"
    poll_until(lambda: f"web: {url.rstrip('/')}" in mesh.log("web"), 15, what="tickmesh-web's URL")
    driver = chromium()
    w = Web(mesh, url, driver)
    wanted = {"router", "aggregator", "worker.tick.0", "worker.ohlcv.0", "worker.fmv.0"}

    def reporting() -> bool:
        try:
            return wanted <= {p.process for p in w.metrics().processes if p.live}
        except grpc.RpcError:
            return False

    poll_until(reporting, 20, what="every process reporting to control")
    try:
        yield w
    finally:
        driver.quit()


def test_the_page_shows_the_events_and_the_mesh_and_steers_it_only_with_the_token(web: Web) -> None:
    d = web.driver
    d.get(web.url)
    poll_until(lambda: web.text("#status") == "live", 10, what="the page's websocket")
    now = time.time_ns()
    web.mesh.push(scripted(now))
    rows = poll_until(lambda: r if len(r := web.rows()) >= 5 else None, 5, what="the scripted events on the tape")
    got = sorted((r["kind"], r["channel"], r["ticker"]) for r in rows)
    assert got == [("big_move", "ohlcv", "MSFT"), ("fmv_deviation", "fmv", "NVDA"), ("high", "ohlcv", "MSFT"),
                   ("high", "tick", "AAPL"), ("high", "tick", "AAPL")]  # fmt: skip
    aapl = [r for r in rows if r["ticker"] == "AAPL"]
    assert [r["price"] for r in aapl] == ["101", "100.5"]  # newest on top
    assert "previous=100.5" in aapl[0]["fields"] and "count=" in aapl[0]["fields"]
    assert all(r["latency"].endswith(" ms") for r in rows)
    fmv = next(r for r in rows if r["kind"] == "fmv_deviation")
    assert "fmv=203" in fmv["fields"] and "direction=overvalued" in fmv["fields"]

    web.type_into("f-kind", "big_move")
    assert [(r["kind"], r["ticker"]) for r in web.rows()] == [("big_move", "MSFT")]
    web.type_into("f-kind", "")
    web.type_into("f-ticker", "aapl")
    assert [(r["kind"], r["price"]) for r in web.rows()] == [("high", "101"), ("high", "100.5")]
    web.type_into("f-ticker", "")

    # A paused tape queues new events and counts them; they appear on resume. A ticker's recent events.
    d.find_element(By.ID, "pause-tape").click()
    sub = web.mesh.subscriber(tickers=["AAPL"])
    web.mesh.push([Trade("AAPL", 102.0, 100, now + 6 * S)])
    queued = collect(sub, lambda got: any(p.event.price == 102.0 for p in got)) + drain(sub, 300)
    poll_until(lambda: web.text("#queued") == f"{len(queued)} queued", 5, what="the queued count")
    assert len(web.rows()) == 5
    d.find_element(By.ID, "pause-tape").click()
    poll_until(lambda: len(web.rows()) == 5 + len(queued), 5, what="the queued events on the tape")
    assert "102" in [r["price"] for r in web.rows()[: len(queued)]]
    d.find_element(By.CSS_SELECTOR, '#tape tr[data-ticker="AAPL"] td.ticker').click()
    history = '#history tr[data-ticker="AAPL"] td.price'
    poll_until(lambda: d.find_elements(By.CSS_SELECTOR, history), 5, what="AAPL's recent events")
    assert [e.text for e in d.find_elements(By.CSS_SELECTOR, history)][-2:] == ["101", "100.5"]  # newest first
    assert web.text("#history-source") == "from the journal"
    d.find_element(By.ID, "history-close").click()

    def card_matches_control() -> bool:
        tick = next(c for c in web.metrics().channels if c.channel == "tick")
        shown = web.text('.card[data-channel="tick"] dd[data-field="processed"]')
        return tick.processed >= 3 and shown == f"{tick.processed:,}"

    poll_until(card_matches_control, 5, what="the tick card's processed count to match GetMetrics")
    assert web.text('#processes tr[data-process="router"]'), "the router's process row"

    # Without the token: no actions on the page, and a forged action is refused by control.
    assert not d.find_elements(By.CSS_SELECTOR, "button[data-action]")
    with connect(web.url.replace("http", "ws") + "stream") as ws:
        ws.send(json.dumps({"type": "action", "action": "pause", "channel": "tick", "token": "forged"}))
        ws.send(json.dumps({"type": "action", "action": "pause", "channel": "tick"}))
        replies = _replies(ws, 2)
    assert [r["type"] for r in replies] == ["ack", "error"]
    assert not replies[0]["ok"] and "unauthenticated" in replies[0]["error"]
    assert not web.stub.ListChannels(pb.ListChannelsRequest(), metadata=MD).channels[0].paused

    # With the token: the tick channel is paused from the page; control's ListChannels shows it.
    web.type_into("token", TOKEN)
    d.find_element(By.ID, "login").click()
    pause = poll_until(lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-channel="tick"] button[data-action="pause"]'),
                       5, what="the pause button after the token")  # fmt: skip
    pause[0].click()
    version = poll_until(lambda: d.find_element(By.ID, "ack").get_attribute("data-version"), 10, what="the ack")
    listed = web.stub.ListChannels(pb.ListChannelsRequest(), metadata=MD)
    assert listed.channels[0].name == "tick" and listed.channels[0].paused
    assert int(version) == listed.config_version >= 1
    assert f"config version {version}" in d.find_element(By.ID, "ack").text
    poll_until(lambda: web.text('#config tr[data-channel="tick"] td[data-field="paused"]') == "PAUSED", 5)

    # A threshold set from the page: the next config version, and control holds the new value.
    row = '#config tr[data-channel="ohlcv"] td.action'
    Select(d.find_element(By.CSS_SELECTOR, f"{row} select")).select_by_visible_text("big_move_pct")
    d.find_element(By.CSS_SELECTOR, f"{row} input").send_keys("3.5")
    d.find_element(By.CSS_SELECTOR, f'{row} button[data-action="set"]').click()
    poll_until(lambda: d.find_element(By.ID, "ack").get_attribute("data-version") == str(int(version) + 1), 10)
    ohlcv = web.stub.ListChannels(pb.ListChannelsRequest(), metadata=MD).channels[1]
    assert ohlcv.name == "ohlcv" and float(ohlcv.rules["big_move_pct"]) == 3.5
    assert web.errors() == []
    if os.environ.get("TICKMESH_WEB_SCREENSHOT"):
        screenshot_under_load(web, Path(os.environ["TICKMESH_WEB_SCREENSHOT"]))
    assert web.mesh.stop("web") == 0  # a clean stop inside the grace, with a browser connected


def _replies(ws: Any, n: int) -> list[dict[str, Any]]:
    """The next `n` replies to this socket's own requests (events and mesh snapshots skipped)."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] in ("ack", "error", "login"):
            out.append(message)
    return out


def swinging(now: int, step: int, tickers: int = 20, per_ticker: int = 40) -> list[Record]:
    """Trades of `tickers` symbols, half rising and half falling, 0.1 s apart: highs, lows, trends, surges."""
    out: list[Record] = []
    for i in range(tickers):
        sign = 1 if i % 2 else -1
        for j in range(per_ticker):
            k = step * per_ticker + j
            price = 50 + i + sign * k * 0.02 + (0.3 if k % 9 == 0 else 0.0)
            out.append(Trade(f"T{i:02d}", round(price, 2), 100 + (k % 50) * 20, now + k * S // 10))
    return out


def screenshot_under_load(web: Web, path: Path) -> None:
    """docs/web.png: the tick channel resumed, then bursts of trades from 20 swinging tickers."""
    web.stub.ResumeChannel(pb.ChannelRequest(channel="tick"), metadata=MD)
    now = time.time_ns()
    for step in range(20):
        time.sleep(0.5)  # not a wait for a signal: spreads the load so the charts have a shape
        web.mesh.push(swinging(now, step))
    time.sleep(1)  # a snapshot or two after the last burst
    web.driver.execute_script("window.scrollTo(0, 0); document.getElementById('mesh').scrollLeft = 0")
    web.driver.save_screenshot(str(path if path.is_absolute() else ROOT / path))
    print(urllib.request.urlopen(web.url + "api/stats", timeout=5).read().decode())
