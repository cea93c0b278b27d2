"""A TCP proxy in front of one real server that fails the way networks and servers do.

Faults, armed one at a time (``FAULTS``):

* ``refuse``: the proxy stops listening; a connect is refused by the kernel (RST).
* ``black-hole``: a firewall rule drops the SYNs to the proxy's port, so a connect never
  gets a SYN-ACK and times out. The rule lives in the sandbox's private namespace
  (``sandbox.py``) and is removed on close.
* ``drop-reply``: the request is forwarded; the first reply chunk for which the trigger
  holds (the server has applied the request) is dropped and the connection closed.
* ``hold-reply``: as ``drop-reply``, but the reply is held past the client's timeout,
  and the connection stays open until the client gives up.
* ``reset-mid-reply``: half of that reply chunk is sent, then the connection is reset.

The trigger is asked before each chunk the server sends once armed, with everything the
client has sent on that connection; a fault fires once, on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable

from tests.conformance.sandbox import in_private_namespace

HOST = "127.0.0.1"
FAULTS = ("refuse", "black-hole", "drop-reply", "hold-reply", "reset-mid-reply")
HOLD_MAX = 30.0  # seconds a held reply waits for the client to give up

Trigger = Callable[[bytes], Awaitable[bool]]


class FaultProxy:
    """Listens on ``HOST:port`` and forwards to ``HOST:target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.fault: str | None = None
        self.trigger: Trigger | None = None
        self.fired = False
        self._server: asyncio.Server | None = None
        self._rules: list[list[str]] = []
        self._connections: set[asyncio.Task] = set()
        self._pumps: set[asyncio.Future] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def arm(self, fault: str, trigger: Trigger | None = None) -> None:
        assert fault in FAULTS, fault
        self.fault, self.trigger = fault, trigger
        if fault == "refuse":
            assert self._server is not None
            self._server.close()
            self.fired = True
        elif fault == "black-hole":
            self._firewall(["INPUT", "-p", "tcp", "-d", HOST, "--dport", str(self.port),
                            "--syn", "-j", "DROP"])
            self.fired = True
        else:
            assert trigger is not None, f"{fault} needs a trigger"

    async def close(self) -> None:
        while self._rules:
            rule = self._rules.pop()
            subprocess.run(["iptables", "-w", "10", "-D", *rule], check=True,
                           capture_output=True)
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):  # each connection then closes both its sides
            pump.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def _firewall(self, rule: list[str]) -> None:
        if not in_private_namespace():  # never the host's own rules
            raise RuntimeError("the proxy changes firewall rules only inside a sandbox")
        self._rules.append(rule)
        subprocess.run(["iptables", "-w", "10", "-I", *rule], check=True,
                       capture_output=True)

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_w.transport.abort()
            self._connections.discard(task)
            return
        sent = bytearray()
        pumps = {asyncio.ensure_future(self._upstream(client_r, server_w, sent)),
                 asyncio.ensure_future(self._downstream(server_r, client_w, sent))}
        self._pumps |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps -= pumps
            for writer in (client_w, server_w):
                writer.close()
            self._connections.discard(task)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        sent: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                sent += data
                writer.write(data)
                await writer.drain()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          sent: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if (self.trigger is not None and not self.fired
                        and await self.trigger(bytes(sent))):
                    self.fired = True
                    await self._misbehave(data, writer)
                    return
                writer.write(data)
                await writer.drain()

    async def _misbehave(self, reply: bytes, writer: asyncio.StreamWriter) -> None:
        if self.fault == "hold-reply":
            await asyncio.sleep(HOLD_MAX)  # cancelled as soon as the client hangs up
        elif self.fault == "reset-mid-reply":
            writer.write(reply[:len(reply) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # closes with SO_LINGER 0: an RST, not a FIN
        # drop-reply: nothing is sent, and the connection is closed on return
