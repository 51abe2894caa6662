"""`python -m tickmesh.hold MODULE ARGS…`: run a one-shot process, then stay up until SIGTERM/SIGINT.

honcho stops the whole mesh when any process ends, even with exit 0. `tickmesh up
--feed replay FILE…` runs the replay through this, so the mesh keeps running (and
showing events) after the files are done; a failed replay still ends it, with its
exit code.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

from tickmesh.runtime import StopFlag

POLL_S = 0.1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m tickmesh.hold MODULE [ARGS…]", file=sys.stderr)
        return 2
    stop = StopFlag()
    # the child shares this process group, so honcho's SIGTERM (to the group) reaches it directly
    child = subprocess.Popen([sys.executable, "-m", *args])
    while child.poll() is None:
        if stop:
            child.terminate()  # it may have had the signal already (a process group's): it stops once
            return child.wait()
        try:
            child.wait(POLL_S)
        except subprocess.TimeoutExpired:
            continue
    if child.returncode != 0:
        return child.returncode
    print(f"`python -m {' '.join(args)}` finished; the mesh keeps running until Ctrl-C", flush=True)
    while not stop:
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
