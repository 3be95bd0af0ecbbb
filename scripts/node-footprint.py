#!/usr/bin/env python3
"""A node's footprint, two builds side by side: `nex node up --no-sandbox` on a fresh nats-server (loopback,
ephemeral port) with the default warm pool of one; after 3 s, every process of the node's tree with its RSS
and threads. Usage: scripts/node-footprint.py NEX_BEFORE NEX_AFTER [ROUNDS]"""
import os, subprocess, sys, time, tempfile, socket, signal
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def status(pid):
    d = {}
    for line in open(f"/proc/{pid}/status"):
        k, v = line.split(":", 1); d[k] = v.strip()
    return d
def children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try: out += [int(x) for x in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except FileNotFoundError: pass
    return out
def tree(pid):
    res = [pid]
    for c in children(pid): res += tree(c)
    return res
def measure(nex, label, venv):
    port = free_port(); d = tempfile.mkdtemp()
    srv = subprocess.Popen([f"{venv}/bin/nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", d + "/js"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    env = dict(os.environ, NEX_HOME=d + "/home", PATH=f"{venv}/bin:" + os.environ["PATH"])
    t0 = time.monotonic()
    node = subprocess.Popen([nex, "node", "up", "-s", f"nats://127.0.0.1:{port}", "--no-sandbox"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    up = None
    for line in node.stdout:
        if "is up" in line: up = time.monotonic() - t0; break
    # wait for the warm agent (a nex-agent child) and let things settle
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(open(f"/proc/{c}/comm").read().strip().startswith("nex-agent") for c in children(node.pid) if os.path.exists(f"/proc/{c}/comm")): break
        time.sleep(0.05)
    spawned = time.monotonic() - t0
    time.sleep(3)
    pids = tree(node.pid)
    rows = []
    for p in pids:
        s = status(p); rows.append((open(f"/proc/{p}/comm").read().strip(), int(s["VmRSS"].split()[0]), int(s["Threads"])))
    n = status(node.pid)
    print(f"{label}: node up {up*1000:.0f} ms, agent spawned {spawned*1000:.0f} ms; processes {len(pids)}: " + ", ".join(f"{c} {r/1024:.1f} MiB {t} threads" for c, r, t in rows))
    print(f"{label}: total RSS {sum(r for _, r, _ in rows)/1024:.1f} MiB, node threads {n['Threads']}")
    node.send_signal(signal.SIGTERM); node.wait(timeout=20); srv.terminate(); srv.wait()
if len(sys.argv) < 3:
    sys.exit("usage: scripts/node-footprint.py NEX_BEFORE NEX_AFTER [ROUNDS]   (two nex binaries, each with its nex-agent beside it)")
venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv")
for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 3):
    measure(sys.argv[1], "before", venv)
    measure(sys.argv[2], "after", venv)
