# Entry points that are not cargo's own. `make bench` is the documented benchmark command.
.PHONY: bench bench-quick

# The full benchmark of augur against Envoy, haproxy and a direct connection (BENCHMARKS.md):
# installs what it needs, builds augur in release mode, runs every scenario and writes the
# results into BENCHMARKS.md and target/bench/.
bench:
	bench/run.sh

# One short round of every scenario, for development; BENCHMARKS.md is left alone.
bench-quick:
	BENCH_QUICK=1 bench/run.sh
