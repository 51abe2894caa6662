"""A ten-line subscriber: print every new high and low as JSON (run the mesh first: `honcho start`)."""

import json

from subscriber.client import Subscriber, as_dict

sub = Subscriber("tcp://127.0.0.1:5591", replay="tcp://127.0.0.1:5592", kinds=["high", "low"])
while True:
    publication = sub.recv(timeout_ms=1_000)
    if publication is not None:
        print(json.dumps(as_dict(publication)))
