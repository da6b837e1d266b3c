#!/usr/bin/env python3
"""The benchmark harness behind `make bench` (bench/run.sh installs and builds, then runs this).

Everything runs on loopback. nginx backends (one worker each) answer a small JSON prediction;
for every scenario the harness starts the targets (direct = the backend itself, augur, Envoy
1.40, haproxy: one worker thread each), then runs the scenario's measurements round by round,
every target once per round in a rotating order so that machine drift cancels in the ratios.

Load: wrk (HTTP/1.1) or h2load (HTTP/2) for the saturation figure; oha with
`--latency-correction` at fixed rates for latency (a run below 99% of its target rate is kept
and marked rejected). The generator is pinned to CPU 1 and every server to CPU 0 when the
machine has two or more CPUs. CPU seconds come from /proc/PID/stat (utime + stime) deltas over
each measurement, peak RSS from /proc/PID/status VmHWM at the end of the scenario.

Results: target/bench/results.json (every measurement), target/bench/results.md (the tables),
and with --write-doc the marked section of BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Ports: backends 1908x, direct h2c/TLS 1909x/1928x, proxies 19[1-4]xx by scenario.
V1, V2, MIRROR, MODEL_SERVER = 19081, 19082, 19083, 19085
DIRECT_H2C, DIRECT_TLS = 19091, 19281
HOST = "model"
BODY = '{"prediction":"NORMAL","confidence":0.12,"model_version":"%s"}'

SCENARIOS = ["h1", "h2", "mirror", "shadow", "tls", "conns"]
TITLES = {
    "h1": "1. 80/20 split, HTTP/1.1 keep-alive",
    "h2": "2. 80/20 split, HTTP/2 (h2c prior knowledge downstream, HTTP/1.1 upstream)",
    "mirror": "3. split + 100% mirroring to a second backend",
    "shadow": "4. split + 100% mirroring into the embedded shadow model (224x224 X-ray POST)",
    "tls": "5. TLS downstream (augur: rustls; Envoy: BoringSSL; haproxy, nginx: OpenSSL)",
    "conns": "6. 1,000 idle keep-alive connections + load",
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and /proc


class Procs:
    """Every process the harness started, killed by pid on exit."""

    def __init__(self, pin):
        self.children = []
        self.pin = pin

    def start(self, argv, name, log_dir, env=None, cpu="0"):
        """Starts argv pinned to `cpu` (when pinning), output to log_dir/name.log."""
        if self.pin and cpu is not None:
            argv = ["taskset", "-c", cpu] + argv
        out = open(os.path.join(log_dir, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.children.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.children:
            self.children.remove(p)

    def stop_all(self):
        for p in list(self.children):
            self.stop(p)


def children_of(pid):
    """Direct children of pid (nginx's worker under its master)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def cpu_seconds(pids):
    """utime + stime of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def status_kib(pid, key):
    """A VmXXX line of /proc/PID/status, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_http(url, host=HOST, timeout=30.0, ok=lambda s: s == 200):
    """Waits until url answers (any status `ok` accepts)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers={"Host": host})
            with urllib.request.urlopen(req, timeout=2, context=_insecure()) as r:
                if ok(r.status):
                    return
                last = r.status
        except urllib.error.HTTPError as e:
            if ok(e.code):
                return
            last = e.code
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up: {last}")


def wait_tcp(port, timeout=30.0):
    """Waits until something accepts on port (for listeners that speak only HTTP/2)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _insecure():
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- configuration files


def nginx_conf(work, name, port, extra_listen=""):
    d = os.path.join(work, f"nginx-{name}")
    os.makedirs(d, exist_ok=True)
    conf = f"""daemon off; master_process on; worker_processes 1; pid {d}/pid; error_log {d}/error.log;
worker_rlimit_nofile 65536;
events {{ worker_connections 8192; }}
http {{ access_log off; client_body_temp_path {d}; client_max_body_size 64m;
  keepalive_requests 100000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{port} reuseport; {extra_listen}
    location / {{ default_type application/json; return 200 '{BODY % name}'; }} }} }}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path, d


ISTIO = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: model}}
spec:
  hosts: [model]
  http:
  - name: primary
    route:
    - {{destination: {{host: model, subset: v1}}, weight: 80}}
    - {{destination: {{host: model, subset: v2}}, weight: 20}}
{mirror}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: model}}
spec:
  host: model
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: mirror, labels: {{version: mirror}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: model}}
spec:
  hosts: [model]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{version: v2}}}}
  - {{address: 127.0.0.1, ports: {{http: {mirror_port}}}, labels: {{version: mirror}}}}
"""

CANARY = """---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {{name: model}}
spec:
  startOn: immediately
  trafficRouting:
    virtualService: {{name: model, routes: [primary]}}
  stable: {{host: model, subset: v1}}
  canary: {{host: model, subset: v2}}
  steps:
  - setWeight: 20
  - pause: {{}}
  analysis:
    interval: 1m
    minSamples: 100
    onNoData: hold
    metrics:
    - {{name: error-rate, kind: errorRate, allowedChange: {{absolute: 1}}}}
  prediction: {{scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}}
  shadow:
    model: {model}
    mirrorPercentage: {percentage}
    preprocessing:
{preprocessing}    runtime: {{workers: 1, queueCapacity: 64, maxBatch: 8, maxBatchWait: 2ms, intraOpThreads: 1}}
"""

# The same 80/20 split, set by a rollout held at its first step: what a sidecar following
# `augur controller` serves (scenario 1's augur-follower).
ROLLOUT = """---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: model}
spec:
  startOn: immediately
  trafficRouting:
    virtualService: {name: model, routes: [primary]}
  stable: {host: model, subset: v1}
  canary: {host: model, subset: v2}
  steps:
  - setWeight: 20
  - pause: {}
"""


def augur_policy(work, name, mirror=False, shadow=None, rollout=False):
    """The VirtualService/DestinationRule/ServiceEntry of the split (+ mirror, + CanaryPolicy)."""
    m = "    mirror: {host: model, subset: mirror}\n    mirrorPercentage: {value: 100}\n" if mirror else ""
    text = ISTIO.format(mirror=m, v1=V1, v2=V2, mirror_port=MIRROR)
    if shadow:
        text += CANARY.format(**shadow)
    if rollout:
        text += ROLLOUT
    # Each policy in a directory of its own: augur watches the policy's directory, and the
    # harness's logs must not look like policy changes.
    d = os.path.join(work, "policies", name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "policy.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def envoy_conf(work, name, port, admin, h2=False, mirror=None, tls=None):
    """A static Envoy config equivalent to augur's policy: weighted_clusters 80/20."""
    mirror_policy = ""
    if mirror:
        mirror_policy = f"""
                  request_mirror_policies:
                  - cluster: {mirror}
                    runtime_fraction: {{default_value: {{numerator: 100, denominator: HUNDRED}}}}"""
    transport = ""
    if tls:
        transport = f"""
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {{filename: {tls[0]}}}
              private_key: {{filename: {tls[1]}}}"""
    codec = "AUTO"
    cluster = lambda n, p: f"""  - name: {n}
    type: STATIC
    connect_timeout: 1s
    load_assignment: {{cluster_name: {n}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}}}]}}]}}
"""
    clusters = cluster("v1", V1) + cluster("v2", V2)
    if mirror == "mirror":
        clusters += cluster("mirror", MIRROR)
    elif mirror == "model_server":
        clusters += cluster("model_server", MODEL_SERVER)
    conf = f"""admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: b
          codec_type: {codec}
          route_config:
            virtual_hosts:
            - name: model
              domains: ["model", "model:*"]
              routes:
              - match: {{prefix: /}}
                route:
                  weighted_clusters:
                    clusters: [{{name: v1, weight: 80}}, {{name: v2, weight: 20}}]{mirror_policy}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}{transport}
  clusters:
{clusters}"""
    path = os.path.join(work, f"envoy-{name}.yaml")
    with open(path, "w") as f:
        f.write(conf)
    return path


def haproxy_conf(work, name, port, h2=False, tls=None):
    """haproxy with one thread, upstream keep-alive and the same 80/20 split (weighted random)."""
    bind = f"bind 127.0.0.1:{port}"
    if h2:
        bind += " proto h2"
    if tls:
        bind += f" ssl crt {tls} alpn http/1.1"
    conf = f"""global
  nbthread 1
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive
  http-reuse always
frontend f
  {bind}
  default_backend model
backend model
  balance random
  server v1 127.0.0.1:{V1} weight 80
  server v2 127.0.0.1:{V2} weight 20
"""
    path = os.path.join(work, f"haproxy-{name}.cfg")
    with open(path, "w") as f:
        f.write(conf)
    return path


# ---------------------------------------------------------------- load generators


def wrk(port, secs, scheme="http"):
    """Closed-loop saturation: wrk -t1 -c32 (HTTP/1.1 keep-alive)."""
    out = run_gen(
        ["wrk", "-t1", "-c32", f"-d{secs}s", "--latency", "-H", f"Host: {HOST}", f"{scheme}://127.0.0.1:{port}/predict"]
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    pct = {}
    for q, v, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct["p" + q] = float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    return {"tool": "wrk -t1 -c32", "rps": rps, "requests": total, "errors": errors, "latency_ms": pct}


def h2load(port, secs):
    """Closed-loop HTTP/2 saturation: h2load -c16 -m10 (prior knowledge)."""
    out = run_gen(
        ["h2load", "-t1", "-c16", "-m10", "-D", str(secs), "-H", f":authority: {HOST}", f"http://127.0.0.1:{port}/predict"]
    )
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    done, failed, errored = int(m.group(3)), int(m.group(5)), int(m.group(6))
    m2 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    bad = int(m2.group(3)) + int(m2.group(4)) if m2 else 0
    return {"tool": "h2load -c16 -m10", "rps": rps, "requests": done, "errors": failed + errored + bad, "latency_ms": {}}


def oha(oha_bin, port, secs, rate, scheme="http", http2=False, body=None, conns=16):
    """Open-loop fixed rate with coordinated-omission correction."""
    argv = [
        oha_bin, "--no-tui", "--output-format", "json", "-z", f"{secs}s", "-q", str(rate),
        "--latency-correction", "-c", str(conns),
        # The authority is `model` (HTTP/2 has no Host header to override): resolve it here.
        "--connect-to", f"{HOST}:{port}:127.0.0.1:{port}",
    ]
    if http2:
        argv.append("--http2")
    if scheme == "https":
        argv.append("--insecure")
    if body:
        argv += ["-m", "POST", "-D", body, "-T", "image/png"]
    argv.append(f"{scheme}://{HOST}:{port}/predict")
    out = run_gen(argv)
    data = json.loads(out)
    summary = data["summary"]
    lp = data.get("latencyPercentiles", {})
    codes = data.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    # Requests still in flight when `-z` ends are reported as "aborted due to deadline": not
    # failures of the target, so neither counted nor errors.
    errs = {k: v for k, v in data.get("errorDistribution", {}).items() if "deadline" not in k}
    total = sum(codes.values()) + sum(errs.values())
    rps = summary.get("requestsPerSec") or 0.0
    pct = {k: (lp.get(k) or 0.0) * 1e3 for k in ("p50", "p90", "p99", "p99.9")}
    return {
        "tool": f"oha -c{conns} -q{rate} --latency-correction" + (" --http2" if http2 else ""),
        "rate": rate,
        "rps": rps,
        "requests": total,
        "errors": total - ok,
        "latency_ms": pct,
        "rejected": rps < 0.99 * rate,
    }


PIN = True


def run_gen(argv):
    """Runs a load generator pinned to CPU 1; returns its stdout."""
    if PIN:
        argv = ["taskset", "-c", "1"] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr[-2000:]}")
    return r.stdout


# ---------------------------------------------------------------- idle connections


def hold_idle(port, n, scheme="http"):
    """Opens n keep-alive connections, sends one request on each, reads the answers, keeps them."""
    socks = []
    req = f"GET /predict HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    for s in socks:
        s.sendall(req)
    for s in socks:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("an idle connection was closed before its answer")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"content-length:\s*(\d+)", head, re.I)
        need = int(m.group(1)) if m else 0
        while len(rest) < need:
            rest += s.recv(4096)
    return socks


# ---------------------------------------------------------------- targets


class Target:
    """One thing measured: name, the port the load goes to, the pids whose CPU/RSS are counted."""

    def __init__(self, name, port, procs=(), scheme="http"):
        self.name = name
        self.port = port
        self.procs = list(procs)
        self.scheme = scheme
        self.extra = {}

    def pids(self):
        pids = []
        for p in self.procs:
            pids.append(p.pid)
            pids += children_of(p.pid)
        return pids

    def rss_kib(self, key="VmRSS"):
        vals = [status_kib(pid, key) or 0 for pid in self.pids()]
        return sum(vals) if vals else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="augur-bench-")
        self.procs = Procs(args.pin)
        self.results = []
        self.meta = {}
        self.base_id = 10

    # -------- backends
    def start_backends(self):
        ext_v1 = f"listen 127.0.0.1:{DIRECT_H2C} http2; listen 127.0.0.1:{DIRECT_TLS} ssl; ssl_certificate {self.cert}; ssl_certificate_key {self.key};"
        self.backends = {}
        for name, port, extra in (("v1", V1, ext_v1), ("v2", V2, ""), ("mirror", MIRROR, "")):
            conf, d = nginx_conf(self.work, name, port, extra)
            p = self.procs.start(["nginx", "-c", conf, "-p", d], f"nginx-{name}", self.work)
            self.backends[name] = p
        for port in (V1, V2, MIRROR):
            wait_http(f"http://127.0.0.1:{port}/predict")

    def make_cert(self):
        self.cert = os.path.join(self.work, "cert.pem")
        self.key = os.path.join(self.work, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=model",
             "-addext", "subjectAltName=DNS:model,IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        self.pem = os.path.join(self.work, "combined.pem")
        with open(self.pem, "w") as out:
            out.write(open(self.cert).read() + open(self.key).read())

    def make_xray(self):
        """A 224x224 grayscale PNG from one of the repository's chest X-rays (CC BY 4.0)."""
        from PIL import Image

        src = os.path.join(ROOT, "inference/testdata/xrays/person1951_bacteria_4882.jpeg")
        self.xray = os.path.join(self.work, "xray-224.png")
        Image.open(src).convert("L").resize((224, 224)).save(self.xray)
        return os.path.getsize(self.xray)

    # -------- proxies
    def augur(self, name, port, policy, base, tls=False, binary=None, extra=()):
        argv = [
            binary or self.args.augur, "proxy", "--policy", policy, "--admin", f"127.0.0.1:{base}",
            "--status", f"127.0.0.1:{base + 1}", "--prometheus", f"127.0.0.1:{base + 2}",
            "--concurrency", "1", "--state-dir", os.path.join(self.work, f"state-{name}"),
            "--log-level", "error",
        ]
        if tls:
            argv += ["--listen", f"127.0.0.1:{base + 3}", "--tls-listen", f"127.0.0.1:{port}",
                     "--tls-cert", self.cert, "--tls-key", self.key]
        else:
            argv += ["--listen", f"127.0.0.1:{port}"]
        argv += list(extra)
        env = dict(os.environ)
        p = self.procs.start(argv, f"augur-{name}", self.work, env=env)
        t = Target("augur", port, [p], "https" if tls else "http")
        t.extra["prometheus"] = base + 2
        return t

    def augur_rollout(self, name, port, base):
        """augur alone running the same rollout as augur-follower (held at 80/20): the baseline
        that isolates what following the controller costs per request."""
        policy = augur_policy(self.work, "rollout-alone", rollout=True)
        t = self.augur(name, port, policy, base)
        t.name = "augur-rollout"
        return t

    def augur_follower(self, name, port, base):
        """augur following `augur controller` (both counted: the fleet's cost per request),
        with the rollout's 80/20 split pushed by the controller."""
        policy = augur_policy(self.work, "rollout", rollout=True)
        ctl = self.procs.start(
            [self.args.augur, "controller", "--policy", policy, "--listen", f"127.0.0.1:{base + 5}",
             "--admin", f"127.0.0.1:{base + 6}", "--prometheus", f"127.0.0.1:{base + 7}",
             "--state-dir", os.path.join(self.work, f"state-controller-{name}"), "--log-level", "error"],
            f"controller-{name}", self.work,
        )
        wait_http(f"http://127.0.0.1:{base + 5}/ready")
        t = self.augur(name, port, policy, base, extra=["--controller", f"127.0.0.1:{base + 5}"])
        t.name = "augur-follower"
        t.procs.append(ctl)
        return t

    def envoy(self, name, port, admin, **kw):
        conf = envoy_conf(self.work, name, port, admin, **kw)
        self.base_id += 1
        p = self.procs.start(
            [self.args.envoy, "-c", conf, "--concurrency", "1", "--log-level", "error", "--base-id", str(self.base_id)],
            f"envoy-{name}", self.work,
        )
        return Target("envoy", port, [p], "https" if kw.get("tls") else "http")

    def haproxy(self, name, port, **kw):
        conf = haproxy_conf(self.work, name, port, **kw)
        p = self.procs.start(["haproxy", "-db", "-f", conf], f"haproxy-{name}", self.work)
        return Target("haproxy", port, [p], "https" if kw.get("tls") else "http")

    def direct(self, port, scheme="http"):
        return Target("direct", port, [self.backends["v1"]], scheme)

    def variants(self, scenario, port, policy):
        """Other augur binaries (BENCH_AUGUR_VARIANTS="name=path ..."), measured beside augur in
        the same rounds: before/after comparisons of a change."""
        out = []
        for i, spec in enumerate(self.args.augur_variants.split()):
            name, _, path = spec.partition("=")
            t = self.augur(f"{scenario}-{name}", port + 10 * i, policy, 19700 + 10 * i + 100 * len(out), binary=path)
            t.name = f"augur-{name}"
            out.append(t)
        return out

    # -------- one measurement
    def measure(self, scenario, rnd, target, kind, fn):
        pids = target.pids()
        c0 = cpu_seconds(pids)
        t0 = time.time()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - a failed run is recorded, never dropped
            r = {"failed": str(e)[-500:], "rps": 0.0, "requests": 0, "errors": 0, "latency_ms": {}}
        r["cpu_s"] = cpu_seconds(pids) - c0
        r["wall_s"] = time.time() - t0
        n = r.get("requests") or 0
        r["cpu_s_per_10k"] = r["cpu_s"] / n * 1e4 if n else None
        r.update({"scenario": scenario, "round": rnd, "target": target.name, "kind": kind})
        self.results.append(r)
        lat = r.get("latency_ms", {})
        note = " REJECTED" if r.get("rejected") else ""
        note += f" FAILED {r['failed'][:200]}" if "failed" in r else ""
        log(
            f"{scenario} r{rnd} {target.name:8} {kind:10} {r['rps']:>10.0f} req/s  p50 {lat.get('p50', 0):.3f}"
            f" p99 {lat.get('p99', 0):.3f} ms  cpu {r['cpu_s']:.2f}s  err {r.get('errors', 0)}{note}"
        )
        return r

    def rounds(self, scenario, targets, tests, warm=None, fresh=None):
        """Every round runs every target (rotated order) through every test.

        `warm(target)` runs first for each target, unrecorded (connections, pools, caches);
        by default one second of the first test. With `fresh`, a function that starts the
        targets, every round gets newly started ones (stopped after it), so no round measures
        memory a process kept from the round before; `targets` is then ignored."""

        def warm_up(ts):
            for t in ts:
                try:
                    (warm or (lambda t: tests[0][1](t, 1)))(t)
                except Exception as e:  # noqa: BLE001 - the measurements will show the failure
                    log(f"{scenario} warm-up of {t.name} failed: {e}")

        peak = {}

        def note_peaks(ts):
            for t in ts:
                if t.procs and t.name != "direct":
                    peak[t.name] = max(peak.get(t.name) or 0, t.rss_kib("VmHWM") or 0) or None

        if fresh is None:
            warm_up(targets)
        for rnd in range(1, self.args.rounds + 1):
            if fresh is not None:
                targets = fresh()
                warm_up(targets)
            order = targets[(rnd - 1) % len(targets) :] + targets[: (rnd - 1) % len(targets)]
            for t in order:
                for kind, fn in tests:
                    self.measure(scenario, rnd, t, kind, lambda: fn(t, self.args.seconds))
            if fresh is not None:
                note_peaks(targets)
                self.stop(targets)
        if fresh is None:
            note_peaks(targets)
        for name, kib in peak.items():
            self.results.append({"scenario": scenario, "target": name, "kind": "peak_rss", "vmhwm_kib": kib})

    def stop(self, targets):
        for t in targets:
            if t.name != "direct":
                for p in t.procs:
                    self.procs.stop(p)

    def ready(self, targets):
        for t in targets:
            wait_http(f"{t.scheme}://127.0.0.1:{t.port}/predict")

    # -------- scenarios
    def scenario_h1(self):
        ts = [self.direct(V1), self.augur("h1", 19101, self.policy_plain, 19110),
              self.envoy("h1", 19102, 19120), self.haproxy("h1", 19103)]
        ts[2:2] = self.variants("h1", 19104, self.policy_plain)
        ts.insert(2, self.augur_follower("h1-follower", 19105, 19130))
        ts.insert(2, self.augur_rollout("h1-rollout", 19106, 19140))
        self.ready(ts)
        tests = [("saturation", lambda t, s: wrk(t.port, s))]
        for rate in self.args.rates:
            tests.append((f"rate{rate}", lambda t, s, rate=rate: oha(self.args.oha, t.port, s, rate)))
        self.rounds("h1", ts, tests)
        self.stop(ts)

    def scenario_h2(self):
        ts = [self.direct(DIRECT_H2C), self.augur("h2", 19201, self.policy_plain, 19210),
              self.envoy("h2", 19202, 19220), self.haproxy("h2", 19203, h2=True)]
        for t in ts:
            wait_tcp(t.port)
        tests = [("saturation", lambda t, s: h2load(t.port, s)),
                 (f"rate{self.args.rates[0]}", lambda t, s: oha(self.args.oha, t.port, s, self.args.rates[0], http2=True))]
        self.rounds("h2", ts, tests)
        self.stop(ts)

    def scenario_mirror(self):
        policy = augur_policy(self.work, "mirror", mirror=True)
        # `augur-nomirror` is the same split without the mirror, measured in the same rounds:
        # what mirroring adds to the primary's latency.
        nomirror = self.augur("nomirror", 19303, self.policy_plain, 19330)
        nomirror.name = "augur-nomirror"
        ts = [self.augur("mirror", 19301, policy, 19310), nomirror, self.envoy("mirror", 19302, 19320, mirror="mirror")]
        ts[1:1] = self.variants("mirror", 19304, policy)
        self.ready(ts)
        mirror_pids = [self.backends["mirror"].pid] + children_of(self.backends["mirror"].pid)
        c0 = cpu_seconds(mirror_pids)
        tests = [("saturation", lambda t, s: wrk(t.port, s))]
        tests.append((f"rate{self.args.rates[0]}", lambda t, s: oha(self.args.oha, t.port, s, self.args.rates[0])))
        self.rounds("mirror", ts, tests)
        self.meta["mirror_backend_cpu_s"] = cpu_seconds(mirror_pids) - c0
        self.stop(ts)

    def scenario_shadow(self):
        model = os.path.join(ROOT, ".cache/models/pneumonia_xception.onnx")
        which = "real Xception pneumonia model (scripts/fetch-model.sh)"
        if not os.path.exists(model):
            model = os.path.join(ROOT, "inference/fixtures/models/nonmedical-tiny-a.onnx")
            which = "non-medical fixture nonmedical-tiny-a (the real model is absent)"
        self.meta["shadow_model"] = which
        self.meta["xray_body_bytes"] = self.make_xray()
        pre = preprocessing_yaml(model)
        shadowed = augur_policy(self.work, "shadow", shadow={"model": json.dumps(model), "percentage": 100, "preprocessing": pre})
        unshadowed = augur_policy(self.work, "noshadow", shadow={"model": json.dumps(model), "percentage": 0, "preprocessing": pre})
        server = self.procs.start(
            [self.args.augur, "model-server", "--model", model, "--listen", f"127.0.0.1:{MODEL_SERVER}", "--log-level", "error"],
            "model-server", self.work,
        )
        aug = self.augur("shadow", 19401, shadowed, 19410)
        plain = self.augur("noshadow", 19404, unshadowed, 19430)
        plain.name = "augur-noshadow"
        env = self.envoy("shadow", 19402, 19420, mirror="model_server")
        env.name = "envoy-mirror"
        ts = [self.direct(V1), plain, aug, env]
        wait_http(f"http://127.0.0.1:{MODEL_SERVER}/health")
        self.ready(ts[1:])
        rate = self.args.shadow_rate
        tests = [(f"rate{rate}", lambda t, s: oha(self.args.oha, t.port, s, rate, body=self.xray))]
        self.rounds("shadow", ts, tests)
        self.meta["shadow_inferences"] = prometheus_counts(aug.extra["prometheus"], "augur_shadow_inferences_total")
        self.meta["shadow_dropped"] = prometheus_counts(aug.extra["prometheus"], "augur_mirror_dropped_total")
        self.meta["model_server_cpu_s"] = cpu_seconds([server.pid])
        self.stop(ts)
        self.procs.stop(server)

    def scenario_tls(self):
        ts = [self.direct(DIRECT_TLS, "https"), self.augur("tls", 19501, self.policy_plain, 19510, tls=True),
              self.envoy("tls", 19502, 19520, tls=(self.cert, self.key)), self.haproxy("tls", 19503, tls=self.pem)]
        self.ready(ts)
        tests = [("saturation", lambda t, s: wrk(t.port, s, "https")),
                 (f"rate{self.args.rates[0]}", lambda t, s: oha(self.args.oha, t.port, s, self.args.rates[0], "https"))]
        self.rounds("tls", ts, tests)
        self.stop(ts)

    def scenario_conns(self):
        """Memory per idle connection, in processes started afresh each round: a proxy that
        served the round before reuses memory those connections freed, which hides the cost."""

        def fresh():
            ts = [self.direct(V1), self.augur("conns", 19601, self.policy_plain, 19610),
                  self.envoy("conns", 19602, 19620), self.haproxy("conns", 19603)]
            ts[2:2] = self.variants("conns", 19604, self.policy_plain)
            self.ready(ts)
            return ts

        n = self.args.idle
        rate = self.args.rates[0]

        def with_idle(t, secs):
            before = t.rss_kib()
            socks = hold_idle(t.port, n)
            time.sleep(0.5)
            after = t.rss_kib()
            try:
                r = oha(self.args.oha, t.port, secs, rate)
            finally:
                for s in socks:
                    s.close()
            r["idle_connections"] = n
            r["rss_before_kib"] = before
            r["rss_idle_kib"] = after
            r["bytes_per_idle_conn"] = (after - before) * 1024 / n if before is not None and after is not None else None
            return r

        tests = [(f"idle{n}+rate{rate}", with_idle)]
        self.rounds("conns", None, tests, warm=lambda t: oha(self.args.oha, t.port, 1, rate), fresh=fresh)

    def run(self):
        self.meta["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.meta["load_start"] = open("/proc/loadavg").read().split()[:3]
        self.meta["machine"] = machine()
        self.meta["versions"] = versions(self.args)
        self.make_cert()
        self.policy_plain = augur_policy(self.work, "plain")
        self.start_backends()
        try:
            for s in self.args.scenarios:
                log(f"scenario {TITLES[s]}")
                t0 = time.time()
                getattr(self, f"scenario_{s}")()
                self.meta[f"seconds_{s}"] = round(time.time() - t0, 1)
        finally:
            self.procs.stop_all()
            if os.environ.get("BENCH_KEEP_WORK") == "1":
                log(f"kept {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        self.meta["load_end"] = open("/proc/loadavg").read().split()[:3]
        self.meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def preprocessing_yaml(model):
    """The policy's shadow.preprocessing from the model's metadata JSON (as `augur demo`)."""
    meta = json.load(open(os.path.splitext(model)[0] + ".json"))["input"]
    ind = "      "
    out = (f"{ind}channels: {meta['channels']}\n{ind}width: {meta['width']}\n{ind}height: {meta['height']}\n"
           f"{ind}resize: {meta.get('resize', 'bilinear')}\n{ind}layout: {meta.get('layout', 'NCHW')}\n")
    norm = meta.get("normalization")
    if norm == "x/127.5-1":
        out += f"{ind}range: [-1, 1]\n"
    elif isinstance(norm, dict) and "mean" in norm:
        out += f"{ind}mean: {json.dumps(norm['mean'])}\n{ind}std: {json.dumps(norm['std'])}\n"
    else:
        out += f"{ind}range: [0, 1]\n"
    return out


def prometheus_counts(port, name):
    """The samples of one metric on augur's Prometheus port, as {labels: value}."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/prometheus", timeout=5).read().decode()
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key[len(name):] or "total"] = float(value)
    return out


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1024 * 1024)
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_gib": mem, "kernel": platform.release(),
            "os": open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else "?"}


def versions(args):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"

    return {
        "augur": first([args.augur, "--version"]),
        "envoy": first([args.envoy, "--version"]) or "?",
        "haproxy": first(["haproxy", "-v"]),
        "nginx": first(["nginx", "-v"]),
        "wrk": first(["wrk", "-v"]),
        "h2load": first(["h2load", "--version"]),
        "oha": first([args.oha, "--version"]),
    }


def main():
    global PIN
    quick = os.environ.get("BENCH_QUICK") == "1"
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--augur", required=True)
    ap.add_argument("--augur-variants", default=os.environ.get("BENCH_AUGUR_VARIANTS", ""),
                    help='other augur binaries measured beside --augur in scenarios 1 and 3, "name=path ..."')
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 1 if quick else 3)))
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 2 if quick else 5)))
    ap.add_argument("--rates", default=os.environ.get("BENCH_RATES", "1000" if quick else "1000 5000"))
    ap.add_argument("--shadow-rate", type=int, default=int(os.environ.get("BENCH_SHADOW_RATE", 20)))
    ap.add_argument("--idle", type=int, default=int(os.environ.get("BENCH_IDLE", 1000)))
    ap.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", " ".join(SCENARIOS)))
    ap.add_argument("--components", default=os.environ.get("BENCH_COMPONENTS", "0" if quick else "1"))
    ap.add_argument("--write-doc", default=os.environ.get("BENCH_WRITE_DOC", "0" if quick else "1"))
    args = ap.parse_args()
    args.rates = [int(r) for r in args.rates.split()]
    args.scenarios = args.scenarios.split()
    args.pin = (os.cpu_count() or 1) >= 2 and os.environ.get("BENCH_PIN", "1") == "1"
    PIN = args.pin
    os.makedirs(OUT, exist_ok=True)
    t0 = time.time()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.procs.stop_all()
    components = {}
    if args.components == "1":
        components = run_components()
    doc = {
        "command": command_line(quick),
        "config": {"rounds": args.rounds, "seconds": args.seconds, "rates": args.rates, "shadow_rate": args.shadow_rate,
                   "idle": args.idle, "pinned": args.pin, "scenarios": args.scenarios},
        "meta": bench.meta,
        "results": bench.results,
        "components": components,
        "harness_seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import report

    md = report.render(doc)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    print(md)
    if args.write_doc == "1":
        report.write_doc(os.path.join(ROOT, "BENCHMARKS.md"), md)
        log("wrote the results into BENCHMARKS.md (between the bench:results markers)")
    log(f"done in {time.time() - t0:.0f} s; results in {OUT}/results.json and results.md")


def command_line(quick):
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    return " ".join(env + ["make bench"]) if env else "make bench"


def run_components():
    """The component benchmarks: the analyzer (1M samples), the controller's fan-out, and inference
    vs Python onnxruntime."""
    comps = {}
    log("component: analyzer (1M samples)")
    r = subprocess.run(
        ["cargo", "run", "--release", "--quiet", os.environ.get("BENCH_CARGO_FLAGS", "--locked"), "-p", "augur-analyzer",
         "--example", "bench_analyzer"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if r.returncode == 0:
        comps["analyzer"] = json.loads(r.stdout.strip().splitlines()[-1])
    else:
        comps["analyzer"] = {"failed": r.stderr[-1000:]}
    log("component: the controller's fan-out to 1-1,000 subscribers")
    r = subprocess.run(
        ["cargo", "run", "--release", "--quiet", os.environ.get("BENCH_CARGO_FLAGS", "--locked"), "-p", "augur-controller",
         "--example", "bench_fanout"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if r.returncode == 0:
        comps["fanout"] = json.loads(r.stdout.strip().splitlines()[-1])
    else:
        comps["fanout"] = {"failed": r.stderr[-1000:]}
    if os.environ.get("BENCH_INFERENCE", "1") == "1":
        log("component: inference vs Python onnxruntime (bench/inference/run.sh)")
        env = dict(os.environ, REPS=os.environ.get("BENCH_INFERENCE_REPS", "3"),
                   SECONDS_PER_RUN=os.environ.get("BENCH_INFERENCE_SECONDS", "2"))
        r = subprocess.run(["bench/inference/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
        comps["inference_log"] = r.stdout[-4000:]
        path = os.path.join(ROOT, "target/bench-inference.json")
        if r.returncode == 0 and os.path.exists(path):
            comps["inference"] = json.load(open(path))
            comps["inference_fresh"] = True
        else:
            comps["inference_failed"] = r.stderr[-1000:]
    return comps


if __name__ == "__main__":
    main()
