"""tickmesh-bench: the benchmark harness (real mesh, raw ceiling, single-process peer, one report)."""
