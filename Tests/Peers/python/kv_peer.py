#!/usr/bin/env python3
"""nats-py side of the key-value interop tests; prints one JSON line.

Usage: kv_peer.py URL make BUCKET KEY=VALUE...   create the bucket (nats-py defaults) and put values
       kv_peer.py URL read BUCKET KEY...         print {"values": {key: value or null}, "keys": [...]}
"""
import asyncio
import json
import sys

import nats
from nats.js.errors import KeyNotFoundError, NoKeysError


async def main(url, mode, bucket, *args):
    nc = await nats.connect(url)
    js = nc.jetstream()
    if mode == "make":
        kv = await js.create_key_value(bucket=bucket, history=5)
        revisions = {}
        for pair in args:
            key, value = pair.split("=", 1)
            revisions[key] = await kv.put(key, value.encode())
        print(json.dumps({"revisions": revisions}))
    else:
        kv = await js.key_value(bucket)
        values = {}
        for key in args:
            try:
                values[key] = (await kv.get(key)).value.decode()
            except KeyNotFoundError:
                values[key] = None
        try:
            keys = sorted(await kv.keys())
        except NoKeysError:
            keys = []
        print(json.dumps({"values": values, "keys": keys}))
    await nc.drain()


asyncio.run(main(*sys.argv[1:]))
