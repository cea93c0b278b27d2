"""A test's name, as a directory of the store.

A name is whatever the user chose (``name = "../../x"``, ``mypkg.sys:make-counter``, a
name in Chinese): it is kept as given in ``test.json`` and shown escaped. Only ``slug``
turns it into a path component, one that cannot leave the store, hide itself, collide
with the ``latest`` link or read as a URL scheme in a link.
"""

from __future__ import annotations

import hashlib
import re

MAX_LENGTH = 80
RESERVED = {"latest"}
"""Names the store uses for itself, next to the test directories."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def slug(name: str) -> str:
    """A directory name for ``name``: ASCII letters, digits and ``_ . + -`` only, not
    starting with ``.`` or ``-``, at most ``MAX_LENGTH`` characters. A name that is
    already safe is its own slug; any other gets a short hash of the original appended,
    so two names that differ only in unsafe characters keep separate directories."""
    safe = _UNSAFE.sub("_", name).lstrip(".-")[:MAX_LENGTH]
    if safe == name and name and name not in RESERVED:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe[:MAX_LENGTH - 9] or 'test'}-{digest}"
