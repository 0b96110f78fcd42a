#!/usr/bin/env python3
"""Invokes a deployed Kiln function with nothing but Debian's python3-msgpack
and python3-websockets: proof that any msgpack-rpc client can speak Kiln.

usage: invoke.py URL TOKEN FUNCTION PAYLOAD   (TOKEN may be "-" for a dev daemon)
Prints one JSON line: the response payload, content type and report.
"""
import asyncio
import json
import sys

import msgpack
import websockets


async def main(url, token, function, payload):
    headers = {} if token == "-" else {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url + "/v1", extra_headers=headers, max_size=None) as ws:
        # Two requests in flight at once on one connection, answered by msgid.
        for msgid, name in ((1, "functions.get"), (2, "invoke")):
            params = {"name": function} if msgid == 1 else {"function": function, "payload": payload.encode()}
            await ws.send(msgpack.packb([0, msgid, name, [params]], use_bin_type=True))
        answers = {}
        while len(answers) < 2:
            kind, msgid, error, result = msgpack.unpackb(await ws.recv(), raw=False)
            assert kind == 1, f"expected a response, got type {kind}"
            if error is not None:
                raise SystemExit(f"{error['code']}: {error['message']}")
            answers[msgid] = result
        info, invoked = answers[1], answers[2]
        print(json.dumps({
            "kind": info["kind"],
            "payload": invoked["payload"].decode(),
            "contentType": invoked["contentType"],
            "report": {k: invoked["report"][k] for k in ("function", "version", "fuelUsed", "cold")},
        }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
