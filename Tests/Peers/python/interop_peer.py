#!/usr/bin/env python3
"""nats-py side of the interop tests. Prints READY once subscribed, then one JSON line per message.

Usage: interop_peer.py URL sub SUBJECT COUNT | pub SUBJECT COUNT | serve SUBJECT COUNT | request SUBJECT PAYLOAD
"""
import asyncio
import json
import sys

import nats


def show(msg):
    return json.dumps({"subject": msg.subject, "reply": msg.reply, "data": msg.data.decode(),
                       "headers": dict(msg.headers or {})})


async def main(url, mode, subject, arg):
    nc = await nats.connect(url)
    if mode == "sub":
        sub = await nc.subscribe(subject)
        await nc.flush()
        print("READY", flush=True)
        for _ in range(int(arg)):
            print(show(await sub.next_msg(timeout=10)), flush=True)
    elif mode == "pub":
        for i in range(int(arg)):
            await nc.publish(subject, f"py-{i}".encode(), headers={"X-Peer": "nats-py", "X-Seq": str(i)})
        await nc.flush()
    elif mode == "serve":
        sub = await nc.subscribe(subject)
        await nc.flush()
        print("READY", flush=True)
        for _ in range(int(arg)):
            msg = await sub.next_msg(timeout=10)
            seen = (msg.headers or {}).get("X-Ask", "")
            await nc.publish(msg.reply, b"py:" + msg.data, headers={"X-Answered-By": "nats-py", "X-Seen": seen})
        await nc.flush()
    elif mode == "request":
        msg = await nc.request(subject, arg.encode(), timeout=10, headers={"X-Ask": "from-py"})
        print(show(msg), flush=True)
    await nc.drain()


asyncio.run(main(*sys.argv[1:5]))
