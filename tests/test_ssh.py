"""The ssh backend against real sshd hosts (``tests/sshd_hosts.py``): what the user sees
when a host key is unknown or changed, a user key is refused or a host is down; hostile
strings arriving literally; the controller refused as its own node; cleanup after a
SIGKILLed controller in the middle of a partition; parsing of nodes and ``[ssh]``."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import net
from harness.cluster.backends.ssh import SSHRemote
from harness.cluster.cleanup import cleanup_all
from harness.cluster.remote import apt_install, require_programs
from harness.cluster.ssh_conn import PASSPHRASE_ENV, command_line, split_node
from harness.daemon import daemon_running, kill_daemon, start_daemon
from harness.errors import EnvironmentFailure, UsageError
from tests.sshd_hosts import SshdHosts, keygen

REPO = Path(__file__).parents[1]
needs_hosts = [pytest.mark.root,
               pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
               pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"),
                                  reason="no /usr/sbin/sshd (apt-get install openssh-server)")]
HOSTILE = "a b 'q' \"dq\" $(touch /tmp/sb-pwned) `id` ; echo pwned; * ~ \\ $HOME"
NAME = HOSTILE.replace("/", "_")
"""HOSTILE as a file name."""


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    made = SshdHosts(tmp_path_factory.mktemp("sshd"), 3)
    yield made
    made.close()


def fingerprint_of(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_file)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- parsing (no hosts) -----------------------------------------------------------------

def test_node_targets_parse_user_host_and_port():
    assert split_node("n1") == (None, "n1", None)
    assert split_node("alice@db-1.example:2222") == ("alice", "db-1.example", 2222)
    assert split_node("root@[fe80::1]:22") == ("root", "fe80::1", 22)
    assert split_node("fe80::1") == (None, "fe80::1", None)
    for bad in ("alice@", "h:0", "h:99999", "h:x"):
        with pytest.raises(UsageError):
            split_node(bad)


def test_bad_ssh_tables_are_one_line():
    for table, word in (({"hostkeypolicy": "x"}, "unknown key"),
                        ({"host_key_policy": "yes"}, "host_key_policy"),
                        ({"port": -1}, "port"), ({"sudo": "yes"}, "sudo"),
                        ({"workdir": "relative"}, "absolute"),
                        ({"key": "/nonexistent/key"}, "does not exist")):
        with pytest.raises(UsageError, match=word):
            SSHRemote(["n1"], table)


def test_a_command_line_is_one_quoted_argument_list():
    line = command_line(["echo", HOSTILE], sudo=True)
    assert line.startswith("sudo -n -- setsid -w sh -c ")
    import shlex

    assert shlex.split(line)[-2:] == ["echo", HOSTILE]


# -- against real hosts ------------------------------------------------------------------

@pytest.mark.usefixtures("hosts")
class TestHosts:
    pytestmark = needs_hosts

    def test_unknown_host_key_is_refused_with_its_fingerprint(self, hosts, tmp_path):
        remote = SSHRemote(["n1"], hosts.settings(known_hosts=str(tmp_path / "empty")),
                           state_dir=tmp_path)
        with pytest.raises(UsageError) as e:
            remote.check_environment()
        line = one_line(e)
        assert "n1" in line and fingerprint_of(Path(f"{hosts.host_keys['n1']}.pub")) in line
        assert "ssh-keyscan" in line and "accept-new" in line
        assert not (tmp_path / "empty").exists()

    def test_accept_new_records_a_new_key_and_strict_then_accepts_it(self, hosts, tmp_path):
        known = tmp_path / "kh"
        remote = SSHRemote(["n2"], hosts.settings(known_hosts=str(known),
                                                  host_key_policy="accept-new"))
        remote.check_environment()
        remote.teardown()
        assert known.read_text().split()[0] == hosts.address("n2")
        strict = SSHRemote(["n2"], hosts.settings(known_hosts=str(known)))
        strict.check_environment()
        strict.teardown()

    def test_a_changed_host_key_is_refused_even_with_accept_new(self, hosts, tmp_path):
        other = keygen(tmp_path / "other")
        known = tmp_path / "kh"
        known.write_text(f"{hosts.address('n3')} {' '.join(other.split()[:2])}\n")
        for policy in ("strict", "accept-new"):
            remote = SSHRemote(["n3"], hosts.settings(known_hosts=str(known),
                                                      host_key_policy=policy))
            with pytest.raises(UsageError) as e:
                remote.check_environment()
            line = one_line(e)
            assert "n3" in line and "CHANGED" in line and "ssh-keygen -R" in line
            assert fingerprint_of(Path(f"{hosts.host_keys['n3']}.pub")) in line
        assert len(known.read_text().splitlines()) == 1

    def test_a_refused_user_key_is_one_line(self, hosts, tmp_path):
        keygen(tmp_path / "stranger")
        remote = SSHRemote(["n1"], hosts.settings(key=str(tmp_path / "stranger")))
        with pytest.raises(UsageError) as e:
            remote.check_environment()
        assert "n1" in one_line(e) and "refused user root" in one_line(e)

    def test_an_encrypted_key_uses_the_environment_passphrase(self, hosts, tmp_path,
                                                              monkeypatch):
        secret = "s3cret passphrase"
        key = tmp_path / "locked"
        public = keygen(key, passphrase=secret)
        with open(hosts.authorized, "a") as f:
            f.write(public + "\n")
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
        with pytest.raises(UsageError, match="encrypted.*ssh-add"):
            SSHRemote(["n1"], hosts.settings(key=str(key))).check_environment()
        monkeypatch.setenv(PASSPHRASE_ENV, secret)
        remote = SSHRemote(["n1"], hosts.settings(key=str(key)), state_dir=tmp_path)
        remote.setup(["n1"])
        try:
            ledger = remote.ledger.path.read_text()
            assert secret not in ledger and str(key) in ledger
        finally:
            remote.teardown()

    def test_a_host_that_is_down_is_one_line_naming_it(self, hosts, tmp_path):
        hosts.stop("n3")
        try:
            began = time.monotonic()
            remote = SSHRemote(["n1", "n3"], hosts.settings(connect_timeout=2))
            with pytest.raises(EnvironmentFailure) as e:
                remote.check_environment()
            assert "host n3" in one_line(e) and "port 22" in one_line(e)
            assert time.monotonic() - began < 30
            assert remote._conns == {}  # the connection to n1 was closed too
        finally:
            hosts.start("n3")
            hosts.wait_listening("n3")

    def test_hostile_strings_arrive_literally(self, hosts, tmp_path):
        marker = Path("/tmp/sb-pwned")
        marker.unlink(missing_ok=True)
        root = tmp_path / "work dir 'q' $(touch x); ls"
        remote = SSHRemote(["n1"], hosts.settings(workdir=str(root)), state_dir=tmp_path)
        remote.setup(["n1"])
        try:
            assert remote.run("n1", ["printf", "%s|", HOSTILE, "two"]).stdout == \
                f"{HOSTILE}|two|"
            wd = remote.workdir("n1")
            assert wd.startswith(str(root))
            source = tmp_path / "in.txt"
            source.write_text(HOSTILE)
            target = f"{wd}/{NAME}.txt"
            remote.upload("n1", str(source), target)
            assert Path(target).read_text() == HOSTILE
            remote.download("n1", target, str(tmp_path / "back"))
            assert (tmp_path / "back").read_text() == HOSTILE
            pidfile = f"{wd}/{NAME}.pid"
            start_daemon(remote, "n1", ["sh", "-c", 'printf "%s" "$1" > "$2"; exec sleep 60',
                                        "sh", HOSTILE, f"{wd}/arg"],
                         pidfile=pidfile, logfile=f"{wd}/{NAME}.log")
            deadline = time.monotonic() + 10
            while not Path(f"{wd}/arg").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert Path(f"{wd}/arg").read_text() == HOSTILE
            kill_daemon(remote, "n1", pidfile)
            assert not daemon_running(remote, "n1", pidfile)
            assert not marker.exists()
        finally:
            remote.teardown()
        assert not root.exists() or list(root.iterdir()) == []

    def test_big_output_on_both_streams_does_not_deadlock(self, hosts, tmp_path):
        remote = SSHRemote(["n3"], hosts.settings())
        remote.check_environment()
        try:
            script = ("i=0; while [ $i -lt 200 ]; do head -c 20000 /dev/zero | tr '\\0' o; "
                      "head -c 20000 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done; exit 7")
            began = time.monotonic()
            result = remote.run("n3", ["sh", "-c", script], check=False, timeout=60)
            assert (result.returncode, len(result.stdout), len(result.stderr)) == \
                (7, 4_000_000, 4_000_000)
            assert set(result.stdout) == {"o"} and set(result.stderr) == {"e"}
            assert time.monotonic() - began < 60
        finally:
            remote.teardown()

    def test_any_argument_list_arrives_as_it_was(self, hosts):
        """Property: whatever the text, the host's argv is the controller's."""
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        remote = SSHRemote(["n1"], hosts.settings())
        remote.check_environment()
        text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                       max_size=40)

        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(text, min_size=1, max_size=5))
        def arrives(argv: list[str]) -> None:
            out = remote.run("n1", ["printf", "%s\\0", *argv]).stdout
            assert out.split("\0")[:-1] == argv

        try:
            arrives()
        finally:
            remote.teardown()

    def test_the_controller_cannot_be_one_of_its_nodes(self, hosts, tmp_path):
        """An sshd in the controller's own network namespace (on a free loopback port)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = tmp_path / "sshd_config"
        cfg.write_text((hosts.dir / "sshd_config_n1").read_text()
                       .replace(f"ListenAddress {hosts.address('n1')}",
                                "ListenAddress 127.0.0.1")
                       .replace("Port 22", f"Port {port}")
                       .replace("sshd_n1.pid", "sshd_self.pid"))
        sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            remote = SSHRemote([f"root@127.0.0.1:{port}"], hosts.settings(
                key=str(hosts.user_key), known_hosts=str(tmp_path / "kh"),
                host_key_policy="accept-new"))
            with pytest.raises(UsageError) as e:
                remote.check_environment()
            assert "is this controller itself" in one_line(e)
        finally:
            sshd.kill()
            sshd.wait()


CONTROLLER = """
import sys, time, json
from harness.cluster import net
from harness.cluster.backends.ssh import SSHRemote
from harness.daemon import start_daemon
remote = SSHRemote(settings=json.loads(sys.argv[1]), state_dir=sys.argv[2])
remote.setup(["n1", "n2"])
for node in remote.nodes:
    wd = remote.workdir(node)
    start_daemon(remote, node, ["sleep", "600"], pidfile=wd + "/s.pid", logfile=wd + "/s.log")
net.drop(remote, remote.nodes, {"n1": ["n2"], "n2": ["n1"]})
net.drop(remote, remote.nodes, {"n1": ["n2"]}, probability=0.5)
print(remote.run_id, flush=True)
time.sleep(600)
"""


def chains(hosts: SshdHosts, name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", hosts.local.namespace(name), "iptables",
                          "-w", "-S"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "SPLITBRAIN" in line]


@pytest.mark.usefixtures("hosts")
class TestCleanup:
    pytestmark = needs_hosts

    def test_sigkilled_controller_then_cleanup_leaves_nothing_on_the_hosts(self, hosts,
                                                                            tmp_path):
        import json

        state = tmp_path / "state"
        proc = subprocess.Popen([sys.executable, "-c", CONTROLLER,
                                 json.dumps(hosts.settings()), str(state)],
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, "the controller did not start"
        run_dir = Path("/var/tmp", f"splitbrain-{run_id}")
        assert run_dir.is_dir() and chains(hosts, "n1") and chains(hosts, "n2")
        pids = [int(p.read_text()) for p in run_dir.glob("*/s.pid")]
        assert len(pids) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines = cleanup_all(state)
        assert not run_dir.exists(), lines
        assert chains(hosts, "n1") == [] and chains(hosts, "n2") == [], lines
        time.sleep(0.2)
        for pid in pids:
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.exists() or stat.read_text().split(")")[1].split()[0] == "Z"
        assert any("killed 2 daemons" in line or "killed 1 daemon" in line for line in lines)
        assert cleanup_all(state) == ["nothing to clean up"]

    def test_cleanup_removes_only_what_the_run_made(self, hosts, tmp_path):
        """Another directory under the work root and a chain of someone else's stay."""
        other = Path("/var/tmp/splitbrain-notours")
        other.mkdir(exist_ok=True)
        ns = hosts.local.namespace("n1")
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-N", "OTHER-CHAIN"],
                       check=True)
        try:
            remote = SSHRemote(settings=hosts.settings(), state_dir=tmp_path)
            remote.setup(["n1"])
            net.drop(remote, ["n1"], {"n1": []})
            remote.teardown()
            assert other.is_dir()
            assert "OTHER-CHAIN" in subprocess.run(
                ["ip", "netns", "exec", ns, "iptables", "-w", "-S"],
                capture_output=True, text=True).stdout
        finally:
            shutil.rmtree(other, ignore_errors=True)
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-X", "OTHER-CHAIN"])


_USERS = itertools.count()


@pytest.fixture
def plain_user(hosts):
    """A user who is not root (the hosts share this machine's /etc/passwd), removed
    afterwards with any sudoers file of the test."""
    if shutil.which("sudo") is None:
        pytest.skip("no sudo (apt-get install sudo)")
    name = f"sbt{os.getpid() % 100000}{next(_USERS)}"
    sudoers = Path(f"/etc/sudoers.d/{name}")
    # "*": no password, yet not locked ("!"), which sshd without PAM would refuse.
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", "-d", "/nonexistent", "-p", "*", name],
                   check=True, capture_output=True)
    try:
        yield name, sudoers
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "-f", name], capture_output=True)


@pytest.mark.usefixtures("hosts")
class TestSudo:
    pytestmark = needs_hosts

    def test_a_user_without_sudo_rights_is_one_line(self, hosts, plain_user):
        name, _ = plain_user
        remote = SSHRemote([f"{name}@n2"], hosts.settings())
        with pytest.raises(EnvironmentFailure) as e:
            remote.check_environment()
        line = one_line(e)
        assert f"{name}@n2" in line and "sudo -n" in line and "`true`" in line

    def test_a_user_with_sudo_runs_as_root_and_files_land_where_root_puts_them(
            self, hosts, plain_user, tmp_path):
        name, sudoers = plain_user
        sudoers.parent.mkdir(exist_ok=True)
        sudoers.write_text(f"{name} ALL=(root) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        remote = SSHRemote([f"{name}@n2"], hosts.settings(), state_dir=tmp_path)
        remote.setup([f"{name}@n2"])
        node = f"{name}@n2"
        try:
            assert remote.run(node, ["id", "-u"]).stdout.strip() == "0"
            # -o install=apt's apt-get goes through sudo too: apt's no-op for a package
            # that is here (as the user, apt-get could not even take its lock)
            apt_install(remote, node, ["coreutils"])
            with pytest.raises(EnvironmentFailure) as e:
                require_programs(remote, node, ["sh", "splitbrain-absent"], "sb-pkg", "none")
            assert one_line(e) == (f"node {node} lacks splitbrain-absent (apt-get install "
                                   "sb-pkg there, or give -o install=apt)")
            closed = f"{remote.workdir(node)}/root-only"
            remote.run(node, ["mkdir", "-m", "700", closed])
            source = tmp_path / "f"
            source.write_text("data")
            remote.upload(node, str(source), f"{closed}/f")
            assert Path(closed, "f").read_text() == "data"
            with pytest.raises(Exception, match="timed out"):
                remote.run(node, ["sleep", "303"], timeout=1)
            time.sleep(0.3)
            ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True,
                                text=True).stdout
            assert not [p for p in ps.splitlines() if "sleep 303" in p and p[0] != "Z"]
        finally:
            remote.teardown()
        assert not Path(closed).exists()

    def test_sudo_false_runs_as_the_user(self, hosts, plain_user, tmp_path):
        name, _ = plain_user
        remote = SSHRemote([f"{name}@n1"], hosts.settings(sudo=False), state_dir=tmp_path)
        remote.check_environment()
        try:
            uid = remote.run(f"{name}@n1", ["id", "-u"]).stdout.strip()
            assert uid != "0" and uid.isdigit()
        finally:
            remote.teardown()


def test_listeners_are_read_from_proc_net_tcp_as_the_kernel_writes_it():
    """Real sockets of this process, found in the kernel's own tables."""
    from harness.cluster.ports import listeners

    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, \
            socket.socket() as idle:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::", 0))
        v6.listen()
        idle.bind(("127.0.0.1", 0))  # bound, not listening
        text = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
        found = listeners(text)
        assert ("127.0.0.1", v4.getsockname()[1]) in found
        assert ("::", v6.getsockname()[1]) in found
        assert idle.getsockname()[1] not in {port for _, port in found}


@pytest.mark.usefixtures("hosts")
class TestPorts:
    pytestmark = needs_hosts

    def test_a_taken_port_refuses_the_server_in_one_line(self, hosts, tmp_path):
        from harness.cluster.ports import busy_ports
        from harness.context import Spec, Test
        from harness.registry import load_system

        remote = SSHRemote(["n1"], hosts.settings(), state_dir=tmp_path)
        remote.setup(["n1"])
        try:
            wd = remote.workdir("n1")
            listen = ("import socket,sys,time\nfor a, p in ((sys.argv[1], 7101), "
                      "('127.0.0.1', 7102), ('0.0.0.0', 7103)):\n"
                      "    s = socket.socket(); s.bind((a, p)); s.listen(); globals()[p] = s\n"
                      "print('up', flush=True)\ntime.sleep(60)\n")
            start_daemon(remote, "n1", [sys.executable, "-c", listen,
                                        remote.peer_address("n1")],
                         pidfile=f"{wd}/l.pid", logfile=f"{wd}/l.log")
            deadline = time.monotonic() + 10
            while "up" not in remote.run("n1", ["cat", f"{wd}/l.log"]).stdout:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert busy_ports(remote, "n1", [7101, 7102, 7103, 7104]) == [7101, 7103]
            system = load_system("counterd", {"variant": "naive", "port": "7103"})
            test = Test(Spec(nodes=["n1"], backend="ssh"), remote, tmp_path)
            with pytest.raises(EnvironmentFailure) as e:
                system.db(test).setup(test, "n1")
            line = one_line(e)
            assert "node n1" in line and "7103" in line and "counterd" in line
        finally:
            remote.teardown()


@pytest.mark.usefixtures("hosts")
class TestWorkdir:
    pytestmark = needs_hosts

    def test_a_work_directory_that_cannot_be_made_is_one_line(self, hosts, tmp_path):
        remote = SSHRemote(["n1"], hosts.settings(workdir="/proc/no-such-place"),
                           state_dir=tmp_path)
        with pytest.raises(EnvironmentFailure) as e:
            remote.setup(["n1"])
        assert "host n1" in one_line(e) and "/proc/no-such-place" in one_line(e)
        assert remote.ledger is None and not list((tmp_path / "ledger").glob("*.json"))


@pytest.mark.usefixtures("hosts")
class TestOtherPort:
    pytestmark = needs_hosts

    def test_a_host_on_another_port_has_its_own_known_hosts_entry(self, hosts, tmp_path):
        """As OpenSSH: a key recorded for ``[addr]:2222`` is that port's, and a key known
        for the address on port 22 does not vouch for port 2222."""
        address = hosts.address("n2")
        cfg = tmp_path / "sshd_config"
        cfg.write_text((hosts.dir / "sshd_config_n2").read_text()
                       .replace("Port 22", "Port 2222")
                       .replace("sshd_n2.pid", "sshd_2222.pid"))
        sshd = subprocess.Popen(["ip", "netns", "exec", hosts.local.namespace("n2"),
                                 "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection((address, 2222), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            node = f"root@{address}:2222"
            key = str(hosts.user_key)
            with pytest.raises(UsageError, match=f"ssh-keyscan -p 2222 {address}"):
                SSHRemote([node], hosts.settings(key=key)).check_environment()
            known = tmp_path / "kh"
            first = SSHRemote([node], hosts.settings(key=key, known_hosts=str(known),
                                                     host_key_policy="accept-new"))
            first.check_environment()
            first.teardown()
            assert known.read_text().startswith(f"[{address}]:2222 ssh-ed25519 ")
            again = SSHRemote([node], hosts.settings(key=key, known_hosts=str(known)))
            again.check_environment()
            assert again.run(node, ["echo", "ok"]).stdout == "ok\n"
            again.teardown()
        finally:
            sshd.kill()
            sshd.wait()
