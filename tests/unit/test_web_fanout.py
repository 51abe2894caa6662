"""The web view's per-browser outbox: bounded, drops counted, a marker once drained, mesh snapshots conflated."""

from __future__ import annotations

import asyncio

from web.fanout import Fanout, Outbox
from web.mesh import History


def test_an_outbox_keeps_its_capacity_counts_the_rest_and_reports_them_once_drained() -> None:
    outbox = Outbox(capacity=3)
    outbox.put_events({"seq": i} for i in range(5))
    assert outbox.stats() == {"queued": 3, "capacity": 3, "dropped": 2, "sent": 0}
    first = outbox.take(limit=2)
    assert first == [{"type": "events", "events": [{"seq": 0}, {"seq": 1}]}]  # no marker while behind
    assert outbox.take() == [{"type": "events", "events": [{"seq": 2}]}, {"type": "dropped", "count": 2}]
    assert outbox.take() == [] and not outbox.ready.is_set()


def test_mesh_snapshots_are_conflated_and_replies_come_first() -> None:
    async def scenario() -> None:
        fanout = Fanout(capacity=10)
        fanout.publish_mesh({"type": "mesh", "n": 1})
        outbox = fanout.join()  # a new browser starts with the latest snapshot
        fanout.publish_mesh({"type": "mesh", "n": 2})
        fanout.publish_events([{"seq": 1}])
        outbox.put_reply({"type": "ack"})
        assert outbox.ready.is_set()
        assert outbox.take() == [{"type": "ack"}, {"type": "mesh", "n": 2}, {"type": "events", "events": [{"seq": 1}]}]
        fanout.leave(outbox)
        fanout.publish_events([{"seq": 2}])
        assert outbox.take() == []

    asyncio.run(scenario())


def test_history_keeps_a_bounded_window_of_rates_and_latencies() -> None:
    history = History(seconds=10, interval_s=1)
    for t in range(15):
        history.add(float(t), [{"channel": "tick", "processed": t * 100, "p50_us": 5.0, "p99_us": 9.0}])
    points = history.of("tick")
    assert len(points) == 10 and points[-1] == [14.0, 100.0, 5.0, 9.0]  # (1400 - 900) / 5 s
    history.add(15.0, [{"channel": "tick", "processed": 0, "p50_us": 1.0, "p99_us": 2.0}])  # control restarted
    assert history.of("tick")[-1][1] == 0.0
