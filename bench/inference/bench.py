#!/usr/bin/env python3
"""Inference throughput of augur's shadow model against Python onnxruntime, on one model.

    bench.py run --augur target/release/examples/bench_inference --model M.onnx \\
        [--reps 5] [--seconds 3] [--threads 1,2] [--batches 1,8] [--json out.json] IMAGE...

For every repetition and every (intra-op threads, batch size) pair it runs one measurement in
a fresh process for each side, back to back, alternating which side goes first:

  augur   `bench_inference infer` (inference/examples): a `ShadowModel` with one worker and
          micro-batches of the batch size, fed preprocessed tensors (the crate's real path:
          queue, batching, ort session, output reading);
  Python  `bench.py ort-infer`: `onnxruntime.InferenceSession.run` on a [batch, ...] array,
          with the crate's session settings (intra-op threads, one inter-op thread, sequential
          execution, graph optimisation level ORT_ENABLE_LAYOUT, which is what `ort`'s Level3
          means).

Both score the same fixed tensor ((i % 17) - 8) / 8 for at least `--seconds` after two
warm-up rounds. Then, interleaved the same way, the decode + preprocess cost per image of
IMAGE... (the 16 X-rays) with the Xception recipe (RGB, 150x150 nearest, x/127.5 - 1): augur's
decoder and preprocessor against PIL + numpy (`bench.py pil-preprocess`), as Keras'
`load_img` does it.

It prints a Markdown table: the median images/s of each side with its min-max over the
repetitions, and the median (min-max) of the per-repetition ratios augur / Python, which is
the figure to trust on a shared, noisy machine. Image contents are never printed.
"""
import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def ramp(n):
    """The fixed input values ((i % 17) - 8) / 8, as the Rust side builds them."""
    import numpy as np

    return ((np.arange(n, dtype=np.int64) % 17).astype(np.float32) - 8.0) / 8.0


def ort_infer(args):
    """One Python onnxruntime measurement: a JSON line like bench_inference's."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    image_shape = [int(d) for d in spec.shape[1:]]
    x = ramp(args.batch * int(np.prod(image_shape))).reshape([args.batch] + image_shape)
    feed = {spec.name: x}
    for _ in range(2):
        session.run(None, feed)
    images = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        session.run(None, feed)
        images += args.batch
    elapsed = time.perf_counter() - start
    print(json.dumps({"impl": "python", "threads": args.threads, "batch": args.batch,
                      "images": images, "seconds": elapsed, "images_per_s": images / elapsed}))


def pil_preprocess(args):
    """Decode + Xception preprocessing with PIL and numpy, per image, from memory."""
    import numpy as np
    from PIL import Image

    bodies = [open(p, "rb").read() for p in args.images]

    def once():
        total = 0.0
        for body in bodies:
            image = Image.open(io.BytesIO(body)).convert("RGB").resize((150, 150), Image.NEAREST)
            tensor = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
            total += float(tensor.flat[tensor.size // 2])
        return total

    once()
    start = time.perf_counter()
    for _ in range(args.rounds):
        once()
    elapsed = time.perf_counter() - start
    images = args.rounds * len(bodies)
    print(json.dumps({"impl": "python", "images": images, "seconds": elapsed,
                      "ms_per_image": elapsed * 1e3 / images}))


def measure(command):
    """Runs one measurement process; returns its JSON line."""
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values):
    return statistics.median(values), min(values), max(values)


def fmt(stats, digits=1):
    median, low, high = stats
    return f"{median:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def sha256_prefix(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def run(args):
    import onnxruntime as ort

    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    me = [sys.executable, os.path.abspath(__file__)]
    results = {(t, b): {"augur": [], "python": [], "ratio": []} for t in threads for b in batches}
    pre = {"augur": [], "python": [], "ratio": []}
    print(f"# {machine()}; onnxruntime {ort.__version__}; model {args.model} "
          f"(sha256 {sha256_prefix(args.model)}…)", file=sys.stderr)
    for rep in range(args.reps):
        for index, (t, b) in enumerate(results):
            commands = {
                "augur": [args.augur, "infer", "--model", args.model, "--threads", str(t),
                          "--batch", str(b), "--seconds", str(args.seconds)],
                "python": me + ["ort-infer", "--model", args.model, "--threads", str(t),
                                "--batch", str(b), "--seconds", str(args.seconds)],
            }
            order = ["augur", "python"] if (rep + index) % 2 == 0 else ["python", "augur"]
            got = {side: measure(commands[side]) for side in order}
            if got["augur"].get("mean_batch") != float(b):
                sys.exit(f"augur ran batches of {got['augur'].get('mean_batch')}, not {b}")
            cell = results[(t, b)]
            for side in order:
                cell[side].append(got[side]["images_per_s"])
            cell["ratio"].append(got["augur"]["images_per_s"] / got["python"]["images_per_s"])
            print(f"rep {rep + 1}/{args.reps} threads {t} batch {b}: augur "
                  f"{got['augur']['images_per_s']:.1f}/s, python {got['python']['images_per_s']:.1f}/s",
                  file=sys.stderr)
        if args.images:
            commands = {
                "augur": [args.augur, "preprocess", "--rounds", str(args.rounds)] + args.images,
                "python": me + ["pil-preprocess", "--rounds", str(args.rounds)] + args.images,
            }
            order = ["augur", "python"] if rep % 2 == 0 else ["python", "augur"]
            got = {side: measure(commands[side]) for side in order}
            for side in order:
                pre[side].append(got[side]["ms_per_image"])
            pre["ratio"].append(got["augur"]["ms_per_image"] / got["python"]["ms_per_image"])

    lines = [
        f"Machine: {machine()}. ONNX Runtime {ort.__version__} (the PyPI wheel's library on both "
        f"sides). Model `{os.path.basename(args.model)}` (sha256 {sha256_prefix(args.model)}…). "
        f"{args.reps} repetitions, {args.seconds} s per measurement, sides interleaved.",
        "",
        "| intra-op threads | batch | augur images/s | Python onnxruntime images/s | augur / Python |",
        "|---:|---:|---:|---:|---:|",
    ]
    for (t, b), cell in results.items():
        lines.append(f"| {t} | {b} | {fmt(summary(cell['augur']))} | {fmt(summary(cell['python']))} "
                     f"| {fmt(summary(cell['ratio']), 2)} |")
    if args.images:
        lines += [
            "",
            f"Decode + Xception preprocessing, {len(args.images)} X-rays × {args.rounds} rounds "
            f"per measurement, one thread:",
            "",
            "| | augur ms/image | PIL + numpy ms/image | augur / Python |",
            "|---|---:|---:|---:|",
            f"| JPEG → 150×150×3 tensor | {fmt(summary(pre['augur']), 2)} | "
            f"{fmt(summary(pre['python']), 2)} | {fmt(summary(pre['ratio']), 2)} |",
        ]
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": machine(), "model": args.model,
                       "inference": {f"threads={t},batch={b}": cell for (t, b), cell in results.items()},
                       "preprocess": pre}, out, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("run", help="the whole interleaved benchmark")
    p.add_argument("--augur", required=True, help="the bench_inference binary")
    p.add_argument("--model", required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--rounds", type=int, default=5, help="preprocessing rounds over the images")
    p.add_argument("--json", help="also write the raw numbers here")
    p.add_argument("images", nargs="*")
    p.set_defaults(func=run)
    p = sub.add_parser("ort-infer", help="one Python onnxruntime measurement")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.set_defaults(func=ort_infer)
    p = sub.add_parser("pil-preprocess", help="one PIL decode + preprocess measurement")
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("images", nargs="+")
    p.set_defaults(func=pil_preprocess)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
