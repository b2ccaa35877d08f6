"""A userspace TCP relay that adds a fixed one-way delay in each direction: a WAN-like round
trip between the controller and test hosts on this machine, whose kernel has no netem.

Each accepted connection on 127.0.0.1:<port> is relayed to one upstream (host, port). Bytes read
from either side are handed on `delay` seconds after they arrived, in order, so a request and
its answer cost one round trip of 2 * delay on top of the loopback one. Bandwidth is not limited:
edge links are slow too, but a re-run moves kilobytes, so the round trips are what a controller
feels.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        # The other side's end of stream, delayed like its data.
        if writer.can_write_eof():
            writer.write_eof()

    delivery = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await delivery
    except (ConnectionError, asyncio.CancelledError):
        delivery.cancel()


class WanLink:
    """Relays 127.0.0.1:<port> to each upstream with `rtt_ms` / 2 of delay per direction, in a
    thread of its own. `ports[upstream]` is where an upstream is reached through the link."""

    def __init__(self, upstreams: list[tuple[str, int]], rtt_ms: float) -> None:
        self._upstreams = upstreams
        self._delay = rtt_ms / 2000.0
        self.ports: dict[tuple[str, int], int] = {}
        self._servers: list[asyncio.Server] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wan-link", daemon=True)

    def __enter__(self) -> WanLink:
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        # SSH ControlPersist masters may still hold connections: end them before the loop.
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _handler(self, host: str, port: int) -> Callable[..., object]:
        async def relay(
            client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
        ) -> None:
            up_writer: asyncio.StreamWriter | None = None
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
                await asyncio.gather(
                    _pump(client_reader, up_writer, self._delay),
                    _pump(up_reader, client_writer, self._delay),
                    return_exceptions=True,
                )
            except (OSError, asyncio.CancelledError):
                # Upstream unreachable, or the link shuts down: the connection just ends.
                pass
            finally:
                if up_writer is not None:
                    up_writer.close()
                client_writer.close()

        return relay

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        for host, port in self._upstreams:
            server = self._loop.run_until_complete(
                asyncio.start_server(self._handler(host, port), "127.0.0.1", 0)
            )
            self._servers.append(server)
            self.ports[(host, port)] = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
