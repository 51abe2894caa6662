"""`python -m control`: the control process (tickmesh-control)."""

from control.app import main

raise SystemExit(main())
