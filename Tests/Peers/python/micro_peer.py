#!/usr/bin/env python3
"""nats-py side of the micro-service interop tests.

Usage: micro_peer.py URL discover NAME   parse $SRV.PING/INFO/STATS.NAME with nats-py's micro types; print JSON
       micro_peer.py URL serve NAME      run a nats-py micro service NAME with endpoint "echo" on "py.echo";
                                         print READY, serve for 30 s
"""
import asyncio
import json
import sys

import nats
from nats.micro import add_service
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats


async def main(url, mode, name):
    nc = await nats.connect(url)
    if mode == "discover":
        ping = ServicePing.from_dict(json.loads((await nc.request(f"$SRV.PING.{name}", b"", timeout=5)).data))
        info = ServiceInfo.from_dict(json.loads((await nc.request(f"$SRV.INFO.{name}", b"", timeout=5)).data))
        stats = ServiceStats.from_dict(json.loads((await nc.request(f"$SRV.STATS.{name}", b"", timeout=5)).data))
        print(json.dumps({
            "ping": {"id": ping.id, "name": ping.name, "version": ping.version, "type": ping.type},
            "info": {"description": info.description,
                     "endpoints": [{"name": e.name, "subject": e.subject, "queue_group": e.queue_group}
                                   for e in info.endpoints]},
            "stats": {"endpoints": [{"name": e.name, "num_requests": e.num_requests, "num_errors": e.num_errors,
                                     "last_error": e.last_error} for e in stats.endpoints]},
        }))
    else:
        async def echo(req):
            await req.respond(b"py:" + req.data)

        svc = await add_service(nc, name=name, version="1.2.3", description="python peer")
        await svc.add_endpoint(name="echo", subject="py.echo", handler=echo)
        await nc.flush()
        print("READY", flush=True)
        await asyncio.sleep(30)  # the test terminates the peer when done
        await svc.stop()
    await nc.drain()


asyncio.run(main(*sys.argv[1:4]))
