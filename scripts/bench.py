#!/usr/bin/env python3
"""Runs the three benchmark clients against one nats-server and prints medians and ratios to nats.go."""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = {
    "swift": [os.path.join(ROOT, "Benchmarks/.build/release/nats-bench")],
    "go": [os.path.join(ROOT, ".build/peers/bench-go")],
    "python": [os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "Benchmarks/peers/python/bench.py")],
}


def start_server():
    tmp = tempfile.mkdtemp(prefix="nats-bench-")
    proc = subprocess.Popen([os.path.join(ROOT, ".venv/bin/nats-server"), "-a", "127.0.0.1", "-p", "-1", "-js",
                             "-sd", os.path.join(tmp, "js"), "--ports_file_dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        files = glob.glob(os.path.join(tmp, "*.ports"))
        if files:
            with open(files[0]) as f:
                return proc, tmp, json.load(f)["nats"][0]
        time.sleep(0.01)
    raise SystemExit("nats-server did not start")


def run(client, url, mode, n, size):
    out = subprocess.run(CLIENTS[client] + [url, mode, str(n), str(size)], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{client} {mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--modes", default="pub,pubsub,reqrep,reqrep-loop,jspub,kvput,kvget",
                    help="comma-separated subset to run")
    args = ap.parse_args()
    modes = set(args.modes.split(","))
    scale = 10 if args.quick else 1
    plan = [  # mode, messages per client, payload size
        ("pub", {"swift": 5_000_000, "go": 5_000_000, "python": 500_000}),
        ("pubsub", {"swift": 2_000_000, "go": 2_000_000, "python": 200_000}),
        ("reqrep", {"swift": 20_000, "go": 20_000, "python": 5_000}),
        ("reqrep-loop", {"swift": 20_000}),
        ("jspub", {"swift": 500_000, "go": 500_000}),
        ("kvput", {"swift": 20_000, "go": 20_000}),
        ("kvget", {"swift": 20_000, "go": 20_000}),
    ]
    proc, tmp, url = start_server()
    results = {}
    try:
        for r in range(args.rounds):
            for mode, counts in plan:
                if mode not in modes:
                    continue
                # Alternate the order each round so no client always runs on a warmer machine.
                order = [c for c in CLIENTS if c in counts]
                if r % 2:
                    order.reverse()
                for client in order:
                    res = run(client, url, mode, max(counts[client] // scale, 100), 16)
                    results.setdefault((client, mode), []).append(res)
                    shown = ", ".join(f"{k}={v:,.1f}" for k, v in res.items() if k not in ("client", "mode"))
                    print(f"  round {r + 1} {mode:12} {client:7} {shown}", flush=True)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(client, mode, key):
        return statistics.median(x[key] for x in results[(client, mode)])

    print(f"\nnats-server 2.15.1 on loopback, 16-byte payloads, median of {args.rounds} rounds\n")
    print(f"{'metric':34} {'swift (ours)':>14} {'nats.go':>12} {'nats-py':>12} {'ours/go':>8}")
    rows = [("pub-only msg/s", "pub", "msgs_per_sec", True), ("1:1 pub/sub msg/s", "pubsub", "msgs_per_sec", True),
            ("request/reply p50 µs", "reqrep", "p50_us", False), ("request/reply p99 µs", "reqrep", "p99_us", False),
            ("  requester on client loop, p50 µs", "reqrep-loop", "p50_us", False),
            ("  requester on client loop, p99 µs", "reqrep-loop", "p99_us", False),
            ("JetStream async publish msg/s", "jspub", "msgs_per_sec", True),
            ("KV put ops/s (sequential)", "kvput", "ops_per_sec", True),
            ("KV get ops/s (sequential)", "kvget", "ops_per_sec", True)]
    summary = {}
    for label, mode, key, higher in rows:
        if mode not in modes or (mode == "reqrep-loop" and "reqrep" not in modes):
            continue
        peer_mode = "reqrep" if mode == "reqrep-loop" else mode
        s = med("swift", mode, key)
        g = med("go", peer_mode, key)
        p = med("python", peer_mode, key) if ("python", peer_mode) in results else float("nan")
        ratio = s / g
        summary[f"{mode}.{key}"] = {"swift": s, "go": g, "python": p, "ratio_to_go": ratio}
        def fmt(v, higher=higher):
            if v != v:  # NaN: no such mode for this client
                return "—"
            return f"{v:,.0f}" if higher else f"{v:,.1f}"
        print(f"{label:34} {fmt(s):>14} {fmt(g):>12} {fmt(p):>12} {ratio:>7.2f}x")
    print("\n(ratio > 1 is better for msg/s; < 1 is better for latency)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
