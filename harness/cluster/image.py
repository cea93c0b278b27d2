"""The Docker backend's node image, built offline from Debian packages.

These machines reach Debian's mirror and PyPI but no container registry, so the image
cannot be pulled: ``debootstrap`` makes a Debian 12 root filesystem from the mirror apt
already uses, and ``docker import`` turns it into an image. The tag is a hash of the
recipe (suite, packages, entrypoint), so the image is rebuilt exactly when the recipe
changes, and a cached one is found by name alone.

Services do not start while the packages install (Debian's redis-server, postgresql and
etcd-server would otherwise start in the chroot, on the host's network): debootstrap
installs a ``policy-rc.d`` that refuses every start for as long as it runs. Downloaded
packages are kept in ``CACHE_DIR``, so a rebuild after a recipe change fetches only what
is new.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors

from harness.errors import UsageError

SUITE = "bookworm"
PACKAGES = ("python3", "iptables", "iproute2", "procps", "tini", "redis-server",
            "etcd-server", "postgresql")
ENTRYPOINT = ["/usr/bin/tini", "--"]
"""tini is PID 1: it reaps daemons the nemesis kills, so none lingers as a zombie."""
CMD = ["sleep", "infinity"]
REPOSITORY = "splitbrain-node"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_DIR = Path("/var/cache/splitbrain/debootstrap")

_RECIPE = {"suite": SUITE, "packages": PACKAGES, "entrypoint": ENTRYPOINT, "cmd": CMD,
           "version": 1}


def default_image() -> str:
    """``splitbrain-node:<hash of the recipe>``."""
    digest = hashlib.sha256(json.dumps(_RECIPE, sort_keys=True).encode()).hexdigest()
    return f"{REPOSITORY}:{digest[:12]}"


def image_exists(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_command() -> str:
    return "splitbrain image build"


def apt_mirror(root: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with (deb822 ``.sources`` or one-line
    ``sources.list``), so the build goes where this machine's packages come from."""
    candidates = [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file() or not path.name.endswith((".list", ".sources")):
            continue
        text = path.read_text(errors="replace")
        if path.name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                suites = fields.get("Suites", "").split()
                if SUITE in suites and fields.get("Types", "deb").split()[0] == "deb":
                    return fields["URIs"].split()[0]
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return DEFAULT_MIRROR


def build_image(client: Any, tag: str | None = None,
                progress: Callable[[str], None] = print) -> str:
    """Builds the node image (a few minutes) and returns its tag."""
    tag = tag or default_image()
    if shutil.which("debootstrap") is None:
        raise UsageError("building the node image needs debootstrap (apt-get install "
                         "debootstrap)")
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="splitbrain-image-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"debootstrap {SUITE} from {mirror}")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        _stream(["debootstrap", "--variant=minbase", f"--cache-dir={CACHE_DIR}",
                 f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), mirror], progress)
        progress(f"importing the root filesystem as {tag}")
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive),
                        "."], check=True)
        repository, _, version = tag.partition(":")
        api = client.api
        changes = [f"ENTRYPOINT {json.dumps(ENTRYPOINT)}", f"CMD {json.dumps(CMD)}",
                   "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   f"LABEL splitbrain.recipe={tag}"]
        api.import_image(src=str(archive), repository=repository, tag=version or "latest",
                         changes=changes)
    progress(f"built {tag}")
    return tag


def _stream(argv: list[str], progress: Callable[[str], None]) -> None:
    """Runs a build step, passing its output lines on as progress; a failure is one line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            last = line
            if line.startswith(("I: Retrieving", "I: Unpacking", "I: Configuring",
                                "I: Base system", "I: Validating")) or "E:" in line:
                progress("  " + line.removeprefix("I: "))
    if proc.wait() != 0:
        raise UsageError(f"building the node image failed at {argv[0]}: {last}")
