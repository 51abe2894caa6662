"""`python -m bench` runs the harness (same as `tickmesh-bench`)."""

from bench.app import main

raise SystemExit(main())
