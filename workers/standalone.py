"""`tickmesh-shard CHANNEL N` (or `CHANNEL-N`, `CHANNEL:N`): one shard as its own process, no supervisor.

For systemd (`tickmesh-worker@tick-0.service`) and Kubernetes, where the
orchestrator restarts a shard that exits; the arguments and options are
`python -m workers.shard`'s.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from tickmesh.config import CHANNELS
from workers import shard

INSTANCE = re.compile(rf"^({'|'.join(CHANNELS)})[-:](\d+)$")  # a systemd instance name such as tick-0


def split_instance(argv: Sequence[str]) -> list[str]:
    """The first `tick-0` or `tick:0` argument → `tick 0`; everything else unchanged."""
    out = list(argv)
    for i, arg in enumerate(out):
        if match := INSTANCE.fullmatch(arg):
            out[i : i + 1] = [match.group(1), match.group(2)]
            break
    return out


HELP = """tickmesh-shard CHANNEL N   (or CHANNEL-N, CHANNEL:N — a systemd instance name such as tick-0)

Run shard N of CHANNEL as its own process, with no supervisor: systemd's
Restart= or a Kubernetes restart policy restarts it (docs/deploy.md).
Exit codes: 0 stopped cleanly, 1 crashed, 2 bad config or arguments, 3 an endpoint
(or its store) is in use or unreachable, 4 a key problem (README, "Exit codes").
Its arguments and options:
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = split_instance(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(HELP)
    return shard.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
