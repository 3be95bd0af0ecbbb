#!/usr/bin/env python3
"""nats-py side of the benchmark: the same modes and output as nats-bench."""
import asyncio
import json
import sys
import time

import nats


async def main(url, mode, n, size):
    n, size = int(n), int(size)
    payload = b"a" * size
    if mode == "pub":
        nc = await nats.connect(url, pending_size=8 * 1024 * 1024)
        start = time.perf_counter()
        for _ in range(n):
            await nc.publish("bench.pub", payload)
        await nc.flush(timeout=60)
        out = {"msgs_per_sec": n / (time.perf_counter() - start)}
        await nc.close()
    elif mode == "pubsub":
        sc = await nats.connect(url)
        pc = await nats.connect(url, pending_size=8 * 1024 * 1024)
        done = asyncio.get_running_loop().create_future()
        count = 0

        async def handler(_):
            nonlocal count
            count += 1
            if count == n:
                done.set_result(time.perf_counter())

        await sc.subscribe("bench.pubsub", cb=handler, pending_msgs_limit=n + 1, pending_bytes_limit=-1)
        await sc.flush()
        start = time.perf_counter()
        for _ in range(n):
            await pc.publish("bench.pubsub", payload)
        await pc.flush(timeout=60)
        end = await asyncio.wait_for(done, 120)
        out = {"msgs_per_sec": n / (end - start)}
        await pc.close()
        await sc.close()
    elif mode == "reqrep":
        rc = await nats.connect(url)
        qc = await nats.connect(url)

        async def respond(m):
            await m.respond(m.data)

        await rc.subscribe("bench.svc", cb=respond)
        await rc.flush()
        for _ in range(min(1000, n)):
            await qc.request("bench.svc", payload, timeout=10)
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            await qc.request("bench.svc", payload, timeout=10)
            lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        out = {"p50_us": lat[n // 2], "p99_us": lat[n * 99 // 100]}
        await qc.close()
        await rc.close()
    print(json.dumps(dict(client="python", mode=mode, **out)))


asyncio.run(main(*sys.argv[1:5]))
