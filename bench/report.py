#!/usr/bin/env python3
"""Turns bench/harness.py's results.json into Markdown tables (and the goals, met or not).

    python3 bench/report.py target/bench/results.json            # print the tables
    python3 bench/report.py target/bench/results.json --write-doc  # and update BENCHMARKS.md

Every ratio is taken per round (targets measured minutes apart in the same round), then the
median and the min-max over the rounds are reported.
"""

import json
import os
import statistics
import sys

BEGIN = "<!-- bench:results:begin (written by bench/run.sh; edit bench/report.py instead) -->"
END = "<!-- bench:results:end -->"
ORDER = ["direct", "augur", "augur-nomirror", "augur-noshadow", "envoy", "envoy-mirror", "haproxy"]
TITLES = {
    "h1": "1. 80/20 split, HTTP/1.1 keep-alive",
    "h2": "2. 80/20 split, HTTP/2 downstream (h2c prior knowledge; HTTP/1.1 upstream)",
    "mirror": "3. split + 100% mirroring to a second nginx",
    "shadow": "4. split + 100% mirroring into the embedded shadow model (224x224 X-ray PNG POST)",
    "tls": "5. TLS downstream (augur rustls, Envoy BoringSSL, haproxy and nginx OpenSSL)",
    "conns": "6. 1,000 idle keep-alive connections + fixed-rate load",
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(xs))}–{fmt(max(xs))})"


def f0(x):
    return f"{x:,.0f}"


def f1(x):
    return f"{x:.1f}"


def f2(x):
    return f"{x:.2f}"


def f3(x):
    return f"{x:.3f}"


def runs(results, scenario, kind, target):
    return sorted(
        (r for r in results if r.get("scenario") == scenario and r.get("kind") == kind and r.get("target") == target),
        key=lambda r: r["round"],
    )


def per_round_ratio(results, scenario, kind, a, b, value):
    """value(run_a) / value(run_b) for each round where both exist."""
    ra = {r["round"]: r for r in runs(results, scenario, kind, a)}
    rb = {r["round"]: r for r in runs(results, scenario, kind, b)}
    out = []
    for k in sorted(set(ra) & set(rb)):
        va, vb = value(ra[k]), value(rb[k])
        if va is not None and vb:
            out.append(va / vb)
    return out


def rps(r):
    return r.get("rps") if "failed" not in r else None


def p99(r):
    return r.get("latency_ms", {}).get("p99") if "failed" not in r else None


def scenario_tables(doc, scenario):
    results = doc["results"]
    rows = [r for r in results if r.get("scenario") == scenario]
    if not rows:
        return ""
    names = []
    for r in rows:
        if r.get("target") not in names:
            names.append(r.get("target"))
    targets = [t for t in ORDER if t in names] + [t for t in names if t not in ORDER]
    kinds = []
    for r in rows:
        if r["kind"] not in kinds and r["kind"] != "peak_rss":
            kinds.append(r["kind"])
    rss = {r["target"]: r.get("vmhwm_kib") for r in rows if r["kind"] == "peak_rss"}
    out = [f"### {TITLES[scenario]}\n"]
    for kind in kinds:
        sample = next(r for r in rows if r["kind"] == kind)
        out.append(f"**{kind}** (`{sample.get('tool', '?')}`, {doc['config']['seconds']} s per run)\n")
        out.append("| target | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | CPU s / 10k req | errors | rejected runs |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in targets:
            rs = runs(results, scenario, kind, t)
            if not rs:
                continue
            lat = lambda q: [r.get("latency_ms", {}).get(q) for r in rs if "failed" not in r]
            has = lambda q: any(v for v in lat(q))
            cell = lambda q: spread(lat(q), f3) if has(q) else "–"
            failed = sum(1 for r in rs if "failed" in r)
            rejected = sum(1 for r in rs if r.get("rejected"))
            rej = f"{rejected}/{len(rs)}" if "rate" in kind else "–"
            if failed:
                rej += f", {failed} failed"
            out.append(
                f"| {t} | {spread([rps(r) for r in rs], f0)} | {cell('p50')} | {cell('p90')} | {cell('p99')} | "
                f"{cell('p99.9')} | {spread([r.get('cpu_s_per_10k') for r in rs], f2)} | "
                f"{sum(r.get('errors', 0) for r in rs)} | {rej} |"
            )
        if scenario == "conns":
            out.append("")
            # Every round starts the proxies afresh (harness.scenario_conns), so each round's
            # growth is the memory of connections opened in a clean process.
            out.append("| target | RSS before (MiB) | with 1,000 idle (MiB) | KiB per idle connection |")
            out.append("|---|---:|---:|---:|")
            for t in targets:
                rs = [r for r in runs(results, scenario, kind, t)
                      if "failed" not in r and r.get("bytes_per_idle_conn") is not None]
                if not rs:
                    continue
                mib = lambda key: spread([r[key] / 1024 for r in rs], f1)
                out.append(
                    f"| {t} | {mib('rss_before_kib')} | {mib('rss_idle_kib')} | "
                    f"{spread([r['bytes_per_idle_conn'] / 1024 for r in rs], f1)} |"
                )
        # Ratios of augur to each peer, per round.
        aug = "augur"
        peers = [t for t in targets if t != aug]
        if aug in targets and peers:
            out.append("")
            out.append(f"| augur / peer ({kind}, per round: median (min–max)) | " + " | ".join(peers) + " |")
            out.append("|---|" + "---:|" * len(peers))
            thr = [spread(per_round_ratio(results, scenario, kind, aug, p, rps), f2) for p in peers]
            out.append("| throughput (higher is better) | " + " | ".join(thr) + " |")
            if "rate" in kind:
                lat = [spread(per_round_ratio(results, scenario, kind, aug, p, p99), f2) for p in peers]
                out.append("| p99 latency (lower is better) | " + " | ".join(lat) + " |")
            cpu = [spread(per_round_ratio(results, scenario, kind, aug, p, lambda r: r.get("cpu_s_per_10k")), f2)
                   for p in peers if p != "direct"]
            if cpu:
                out.append("| CPU per request (lower is better) | " + " | ".join(
                    ["–"] * (1 if "direct" in peers else 0) + cpu) + " |")
        out.append("")
    if rss:
        out.append("Peak RSS (VmHWM at the end of the scenario, proxy process only): " + ", ".join(
            f"{t} {v / 1024:.1f} MiB" for t, v in rss.items() if v) + ".\n")
    return "\n".join(out)


def goals(doc):
    res = doc["results"]
    rates = doc["config"]["rates"]
    lines = ["| goal | measured (median over rounds, min–max) | met? |", "|---|---|---|"]

    def row(goal, xs, ok, fmt=f2):
        xs = [x for x in xs if x is not None]
        if not xs:
            lines.append(f"| {goal} | not measured in this run | – |")
            return
        m = statistics.median(xs)
        verdict = "–" if ok is None else ("**met**" if ok(m) else "**not met**")
        lines.append(f"| {goal} | {spread(xs, fmt)} | {verdict} |")

    row("throughput ≥ 2× Envoy's (scenario 1, saturation)", per_round_ratio(res, "h1", "saturation", "augur", "envoy", rps),
        lambda m: m >= 2.0)
    row("throughput ≥ 0.8× haproxy's (scenario 1, saturation)",
        per_round_ratio(res, "h1", "saturation", "augur", "haproxy", rps), lambda m: m >= 0.8)
    for rate in rates:
        row(f"p99 at {rate} req/s no worse than Envoy's (augur/Envoy p99, scenario 1)",
            per_round_ratio(res, "h1", f"rate{rate}", "augur", "envoy", p99), lambda m: m <= 1.0)
    hwm = {r["target"]: r.get("vmhwm_kib") for r in res if r.get("scenario") == "h1" and r["kind"] == "peak_rss"}
    if hwm.get("augur") and hwm.get("envoy"):
        row("peak RSS ≤ 1/3 of Envoy's without a model (augur/Envoy, scenario 1)", [hwm["augur"] / hwm["envoy"]],
            lambda m: m <= 1 / 3)
    # Mirroring: augur with the mirror against the same augur without it, round by round.
    rate = rates[0]
    base = {r["round"]: p99(r) for r in runs(res, "mirror", f"rate{rate}", "augur-nomirror")}
    mir = {r["round"]: p99(r) for r in runs(res, "mirror", f"rate{rate}", "augur")}
    added = [(mir[k] / base[k] - 1) * 100 for k in sorted(set(base) & set(mir)) if base[k] and mir[k]]
    row(f"100% mirroring adds ≤ 5% to primary p99 at {rate} req/s (scenario 3: augur vs augur-nomirror, same rounds)",
        added, lambda m: m <= 5.0, fmt=lambda x: f"{x:+.0f}%")
    sat = per_round_ratio(res, "mirror", "saturation", "augur", "augur-nomirror", rps)
    row("(reference, no goal) throughput with 100% mirroring / without (scenario 3, saturation)", sat, None)
    inf = doc.get("components", {}).get("inference", {}).get("inference", {})
    r11 = inf.get("threads=1,batch=1", {}).get("ratio")
    if r11:
        row("shadow inference ≥ 1.0× Python onnxruntime (1 thread, batch 1)", r11, lambda m: m >= 1.0)
    return "\n".join(lines)


def components(doc):
    comps = doc.get("components") or {}
    out = []
    an = comps.get("analyzer")
    if an and "methods" in an:
        out.append("**Analyzer** (`analyzer/examples/bench_analyzer.rs`: 1M samples, 80% stable / 20% canary, "
                   "recorded into the per-arm evidence, then one look of four metrics):\n")
        out.append("| method | record, ns per sample | judge (one look), ms | 1M samples in total, ms |")
        out.append("|---|---:|---:|---:|")
        for m in an["methods"]:
            out.append(f"| {m['method']} | {m['record_ns_per_sample']:.0f} | {m['judge_ms']:.2f} | {m['total_ms']:.0f} |")
        out.append(f"\nMemory per arm: {an['memory_per_arm_bytes'] / 1024:.1f} KiB resident whatever the number of "
                   f"samples (measured over 1,000 clones of a filled arm; {an['serialized_arm_bytes'] / 1024:.1f} KiB "
                   f"as persisted JSON).\n")
    fan = comps.get("fanout")
    if fan and "fanout" in fan:
        out.append("**Controller fan-out** (`controller/examples/bench_fanout.rs`: the real server and publisher; "
                   "subscribers in another process, each a watch stream over loopback; 20 decisions per count):\n")
        out.append("| subscribers | decision reaches all, ms (p50) | (max) | controller memory per subscriber, KiB |")
        out.append("|---:|---:|---:|---:|")
        for f in fan["fanout"]:
            out.append(f"| {f['subscribers']} | {f['reach_all_ms_p50']:.2f} | {f['reach_all_ms_max']:.2f} | "
                       f"{f['controller_rss_kib_per_subscriber']:.1f} |")
        out.append("")
    inf = comps.get("inference")
    if inf:
        out.append(f"**Inference** (`bench/inference/run.sh`, run by this harness; model `{inf.get('model')}`):\n")
        out.append("| intra-op threads, batch | augur images/s | Python onnxruntime images/s | augur / Python |")
        out.append("|---|---:|---:|---:|")
        for key, v in inf.get("inference", {}).items():
            out.append(f"| {key} | {spread(v['augur'], f0)} | {spread(v['python'], f0)} | {spread(v['ratio'], f2)} |")
        pre = inf.get("preprocess")
        if pre:
            out.append(f"| decode + preprocess, ms per image | {spread(pre['augur'], f2)} | {spread(pre['python'], f2)} "
                       f"(PIL + numpy) | {spread(pre['ratio'], f2)} |")
        out.append("")
    elif comps.get("inference_failed"):
        out.append(f"Inference component failed: `{comps['inference_failed'][-300:]}`\n")
    return "\n".join(out)


def render(doc):
    meta = doc["meta"]
    m = meta.get("machine", {})
    cfg = doc["config"]
    v = meta.get("versions", {})
    head = [
        f"**Run of {meta.get('started', '?')}**, `{doc['command']}`: {cfg['rounds']} rounds × {cfg['seconds']} s per "
        f"measurement, fixed rates {', '.join(str(r) for r in cfg['rates'])} req/s, targets interleaved in a rotating "
        f"order each round; {'load generator pinned to CPU 1, servers to CPU 0' if cfg['pinned'] else 'nothing pinned'}; "
        f"harness {doc.get('harness_seconds', 0) / 60:.1f} min.",
        "",
        f"**Machine:** {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('mem_gib')} GiB, Linux {m.get('kernel')}, "
        f"Debian {m.get('os')}; shared with other jobs: load average {' '.join(meta.get('load_start', []))} at the start, "
        f"{' '.join(meta.get('load_end', []))} at the end.",
        "",
        f"**Versions:** {v.get('augur')}; Envoy `{v.get('envoy')}`; {v.get('haproxy')}; {v.get('nginx')}; "
        f"{v.get('wrk')}; {v.get('h2load')}; {v.get('oha')}.",
        "",
        "### Goals\n",
        goals(doc),
        "",
    ]
    body = [scenario_tables(doc, s) for s in TITLES]
    notes = []
    if "shadow_model" in meta:
        notes.append(f"Scenario 4: shadow model = {meta['shadow_model']}; body {meta.get('xray_body_bytes')} bytes; "
                     f"{cfg['shadow_rate']} req/s; augur's shadow outcomes {json.dumps(meta.get('shadow_inferences'))}, "
                     f"mirror drops {json.dumps(meta.get('shadow_dropped'))} (a decode error is the harness's readiness "
                     f"GET, which has no image); `envoy-mirror` mirrors every request to "
                     f"`augur model-server` with the same model (its CPU, {meta.get('model_server_cpu_s', 0):.1f} s in all, "
                     f"is not counted in Envoy's), `augur-noshadow` is the same policy with `mirrorPercentage: 0`.")
    if "mirror_backend_cpu_s" in meta:
        notes.append(f"Scenario 3: the mirror nginx used {meta['mirror_backend_cpu_s']:.1f} CPU s over the scenario.")
    tail = ["### Components\n", components(doc)]
    if notes:
        tail += ["### Notes on this run\n"] + [f"- {n}" for n in notes] + [""]
    return "\n".join(head + body + tail)


def write_doc(path, md):
    """Replaces the marked section of BENCHMARKS.md (appends one when there is none)."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = f"{BEGIN}\n{md.strip()}\n{END}"
    if BEGIN in text and END in text:
        start = text.index(BEGIN)
        end = text.index(END) + len(END)
        text = text[:start] + block + text[end:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    doc = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.json"))
    md = render(doc)
    print(md)
    if "--write-doc" in sys.argv:
        write_doc(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md"), md)
