"""An OTLP/HTTP sink for the tracing part: accepts every export and discards it.

    python scripts/bench/otlp_sink.py --port 4318

Answers ``POST /v1/traces`` (any path, any body) with 200 and an empty protobuf, as a collector
that accepted everything would, and ``GET /stats`` with how many exports and bytes arrived, so
the benchmark can tell that spans were sent. Standard library only, one asyncio process: it must
cost the machine next to nothing while the proxy is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
received = {"exports": 0, "bytes": 0}


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if head.startswith(b"get /stats"):
                body = json.dumps(received).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                continue
            size = 0
            if b"transfer-encoding: chunked" in head:
                while (chunk := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
                    size += len(await reader.readexactly(chunk + 2)) - 2
                await reader.readuntil(b"\r\n")
            else:
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        size = len(await reader.readexactly(int(line.split(b":", 1)[1])))
            received["exports"] += 1
            received["bytes"] += size
            writer.write(OK)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
