# Entry points that are not cargo's own. `make bench` is the documented benchmark command.
.PHONY: bench bench-quick bench-instructions

# The full benchmark of augur against Envoy, haproxy and a direct connection (BENCHMARKS.md):
# installs what it needs, builds augur in release mode, runs every scenario and writes the
# results into BENCHMARKS.md and target/bench/.
bench:
	bench/run.sh

# One short round of every scenario, for development; BENCHMARKS.md is left alone.
bench-quick:
	BENCH_QUICK=1 bench/run.sh

# Instructions per request under valgrind's callgrind for augur, Envoy and haproxy (scenario 1):
# a count that, unlike timings, does not move with the machine's load.
bench-instructions:
	BENCH_INSTRUCTIONS=1 bench/run.sh
