#!/usr/bin/env python3
"""nats-py side of the object store interop tests; prints one JSON line.

Usage: obj_peer.py URL put BUCKET NAME SIZE   create the store, put SIZE deterministic bytes, print info
       obj_peer.py URL get BUCKET NAME        print {"size", "sha256_hex", "digest"}
"""
import asyncio
import hashlib
import json
import sys

import nats


def content(size):
    return bytes((i * 7 + 3) % 251 for i in range(size))


async def main(url, mode, bucket, name, size=None):
    nc = await nats.connect(url)
    js = nc.jetstream()
    if mode == "put":
        store = await js.create_object_store(bucket)
        info = await store.put(name, content(int(size)))
        print(json.dumps({"nuid": info.nuid, "digest": info.digest, "chunks": info.chunks}))
    else:
        store = await js.object_store(bucket)
        res = await store.get(name)
        print(json.dumps({"size": len(res.data), "sha256_hex": hashlib.sha256(res.data).hexdigest(),
                          "digest": res.info.digest}))
    await nc.drain()


asyncio.run(main(*sys.argv[1:]))
