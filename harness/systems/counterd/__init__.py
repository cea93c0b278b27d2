"""counterd: the bundled counter service (``server.py``), its System adapter and client."""

from harness.systems.counterd.adapter import CounterdSystem, make_system
from harness.systems.counterd.server import VARIANTS

__all__ = ["VARIANTS", "CounterdSystem", "make_system"]
