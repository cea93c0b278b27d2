"""A private network namespace with an event loop of its own, on one thread.

Linux keeps the network namespace per thread: a thread that calls ``unshare(CLONE_NEWNET)``
moves alone into a fresh namespace (only a loopback device, no firewall rules), and
every socket it opens, every thread it starts and every process it spawns live there
too. The conformance kit runs its servers, proxies and clients on such a thread, so its
fixed ports cannot clash with anything else on the machine, and the firewall rule that
black-holes a connect exists in that namespace only. The namespace disappears with the
thread and its processes: nothing of it can outlive the tests.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def in_private_namespace() -> bool:
    """Whether the calling thread is in another network namespace than the process's
    main thread: the guard in front of every firewall change the kit makes."""
    mine = os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net")
    return mine != os.readlink("/proc/self/ns/net")


class Sandbox:
    """``run(coro)`` runs a coroutine on the sandbox's loop, inside its namespace."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="netns-sandbox", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True,
                           capture_output=True)
            assert in_private_namespace()
        except BaseException as e:  # reported to the thread that made the sandbox
            self._error = e
            self._ready.set()
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        try:
            self.loop.run_forever()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
