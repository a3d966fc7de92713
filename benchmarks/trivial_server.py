"""A trivial Roboflow-shaped endpoint for measuring load generators: answers every request at once with
``{"predictions": []}`` (asyncio + uvloop + httptools, keep-alive). Run pinned to a core of its own:

    taskset -c 1 python benchmarks/trivial_server.py 8799
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

BODY = b'{"time":0.0,"image":{"width":64,"height":64},"predictions":[]}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Processing-Time: 0.000001\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class Trivial(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Trivial, "127.0.0.1", port, backlog=1024)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8799))
