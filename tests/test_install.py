"""``-o install=apt``: a node that lacks a system's programs gets their Debian package.

Against a real network-namespace node of the local backend and this machine's real apt:
the install path runs apt-get for real (its no-op path, for packages that are already
here), a missing program is one line naming the node and ``-o install=apt``, and, where
Debian's small ``hello`` package can be fetched, a real install through the option,
removed again afterwards. No package of this machine is ever removed or upgraded.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.cluster.remote import Result, apt_install, require_programs
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.errors import EnvironmentFailure, UsageError
from harness.systems.counterd.adapter import CounterdDB, CounterdOptions
from harness.systems.etcd_counter import EtcdDB, EtcdOptions
from harness.systems.options import check_options
from harness.systems.postgres_counter import PostgresDB, PostgresOptions
from harness.systems.redis_counter import RedisDB, RedisOptions

MISSING = "splitbrain-no-such-program"
debian = pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian machine")


class Recording:
    """The real LocalRemote, with every command and its result kept: a spy, not a mock
    (each command really runs on the node)."""

    def __init__(self, remote: LocalRemote) -> None:
        self.remote = remote
        self.runs: list[tuple[tuple[str, ...], Result]] = []

    def run(self, node: str, argv: Sequence[str], **kwargs: Any) -> Result:
        result = self.remote.run(node, argv, **kwargs)
        self.runs.append((tuple(argv), result))
        return result

    def apt_gets(self) -> list[tuple[tuple[str, ...], Result]]:
        return [(argv, r) for argv, r in self.runs if "apt-get" in argv]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.remote, name)


@pytest.fixture(scope="module")
def local():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    remote = LocalRemote()
    remote.setup(["n1"])
    yield remote
    remote.teardown()


@pytest.fixture
def spy(local):
    return Recording(local)


def test_every_bundled_system_takes_install_apt_and_refuses_other_installers():
    for model in (CounterdOptions, RedisOptions, EtcdOptions, PostgresOptions):
        assert model.parse({"install": "apt"}).install == "apt"
        assert model.parse({}).install == "none"
        with pytest.raises(UsageError, match="install must be one of none, apt, got 'yum'"):
            model.parse({"install": "yum"})
    check_options({"install": "apt"}, {}, text={"install"},
                  system=("etcd", EtcdOptions), workload=("counter", None))


@pytest.mark.root
@debian
@pytest.mark.parametrize("install", ["none", "apt"])
def test_present_programs_need_no_apt_at_all(spy, install):
    require_programs(spy, "n1", ["sh", "cat"], "coreutils", install)
    assert spy.apt_gets() == []


@pytest.mark.root
@debian
def test_a_missing_program_without_install_is_one_line_naming_node_and_option(spy):
    with pytest.raises(EnvironmentFailure) as e:
        require_programs(spy, "n1", ["sh", MISSING], "splitbrain-pkg", "none")
    assert str(e.value) == (f"node n1 lacks {MISSING} (apt-get install splitbrain-pkg "
                            "there, or give -o install=apt)")
    assert spy.apt_gets() == []


@pytest.mark.root
@debian
def test_install_apt_runs_apt_get_on_the_node_then_checks_again(spy):
    """The install path with apt's no-op: the package (redis-server, or coreutils where
    redis is absent) is already here, so apt-get installs nothing and succeeds; the
    program still missing afterwards is then named, with the package that did not
    provide it."""
    package = "redis-server" if shutil.which("redis-server") else "coreutils"
    with pytest.raises(EnvironmentFailure) as e:
        require_programs(spy, "n1", [MISSING], package, "apt")
    assert str(e.value) == (f"node n1 lacks {MISSING} (apt-get install {package} did not "
                            "provide it)")
    [(argv, result)] = spy.apt_gets()
    assert argv[:2] == ("env", "DEBIAN_FRONTEND=noninteractive")
    assert {"install", "-y", "--no-install-recommends", "--no-upgrade", package} <= set(argv)
    assert result.returncode == 0, result.stderr
    assert "already" in result.stdout  # "... is already the newest version" / "installed"
    # the check ran again after apt-get
    assert [argv[0] for argv, _ in spy.runs] == ["sh", "env", "sh"]


def _system_dbs() -> list[Any]:
    dbs: list[Any] = [pytest.param(CounterdDB(CounterdOptions(install="apt")), id="counterd")]
    for name, db, present in (
            ("redis", RedisDB(RedisOptions(install="apt")), shutil.which("redis-server")),
            ("etcd", EtcdDB(EtcdOptions(install="apt"), "t"), shutil.which("etcd")),
            ("postgres", PostgresDB(PostgresOptions(install="apt")),
             glob.glob("/usr/lib/postgresql/*/bin/postgres"))):
        dbs.append(pytest.param(db, id=name, marks=pytest.mark.skipif(
            not present, reason=f"{name} is not installed (.ci/setup)")))
    return dbs


@pytest.mark.root
@debian
@pytest.mark.parametrize("db", _system_dbs())
def test_each_system_checks_its_programs_on_the_node_with_install_apt(local, db):
    test = RunContext(Spec(nodes=["n1"], backend="local"), local, Path("/tmp"))
    db.check_programs(test, "n1")  # everything is here: no apt-get, no error
    if isinstance(db, PostgresDB):
        assert Path(db.bin_dir, "postgres").exists()


@pytest.mark.root
@debian
@pytest.mark.slow
def test_a_package_apt_cannot_find_fails_in_one_line_after_one_update(spy):
    """apt-get install fails, apt-get update runs (the node has no network here, so it
    keeps the lists it has), the second install fails too: one line naming the node."""
    with pytest.raises(EnvironmentFailure) as e:
        apt_install(spy, "n1", ["splitbrain-no-such-package"])
    assert str(e.value) == ("node n1: apt-get install splitbrain-no-such-package failed "
                            "(E: Unable to locate package splitbrain-no-such-package)")
    assert [next(a for a in argv if a in ("install", "update"))
            for argv, _ in spy.apt_gets()] == ["install", "update", "install"]


HELLO_CACHE = "/var/cache/apt/archives/hello_*.deb"


@pytest.mark.root
@debian
@pytest.mark.slow
def test_install_apt_really_installs_a_missing_package_on_the_node(spy):
    """Debian's ``hello`` (53 kB, needed by nothing) is installed through the option on
    a node, then removed. The node's namespace has no route out, so the controller
    fetches the .deb into apt's cache first (``apt-get install -d``); the node's
    apt-get then really installs it from there."""
    if subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "hello"], capture_output=True,
                      text=True).stdout.startswith("install ok"):
        pytest.skip("hello is installed on this machine already: not ours to remove")
    cached = set(glob.glob(HELLO_CACHE))
    fetched = subprocess.run(["apt-get", "install", "-d", "-y", "-q",
                              "--no-install-recommends", "hello"],
                             capture_output=True, text=True, timeout=300)
    if fetched.returncode != 0:
        pytest.skip(f"cannot fetch Debian's hello package here: {fetched.stderr.strip()}")
    try:
        assert shutil.which("hello") is None
        require_programs(spy, "n1", ["hello"], "hello", "apt")
        assert spy.remote.run("n1", ["hello"]).stdout.strip() == "Hello, world!"
        [(argv, result)] = spy.apt_gets()
        assert result.returncode == 0 and "Setting up hello" in result.stdout
    finally:
        subprocess.run(["apt-get", "remove", "--purge", "-y", "-q", "hello"],
                       capture_output=True, timeout=300, check=False)
        for deb in set(glob.glob(HELLO_CACHE)) - cached:
            os.unlink(deb)
    assert shutil.which("hello") is None
