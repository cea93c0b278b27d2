"""Starting, signalling and stopping long-running processes on a node.

Everything goes through ``Remote.run`` with small POSIX ``sh`` scripts, so the same code
works for network namespaces, containers and SSH hosts. Every user-supplied value is
``shlex.quote``d into the script; nothing is concatenated unquoted.

A daemon runs in a session of its own (``setsid``), so its pid is also its process-group
id: signals go to the whole group, which catches any children it spawned. The daemon
writes its own pid (``echo $$`` before ``exec``), so the pid file names the real process
even where ``setsid`` has to fork. A process counts as running when it exists and is not
a zombie: orphans are reparented to whatever PID 1 is, which may never reap them.
"""

from __future__ import annotations

import posixpath
import shlex
import signal
from collections.abc import Sequence

from harness.cluster.remote import Remote, RemoteError
from harness.errors import EnvironmentFailure

# Shell function shared by the scripts below: "$PIDFILE" names a live, non-zombie process.
_RUNNING = (
    'running() { pid=$(cat "$PIDFILE" 2>/dev/null) && [ -n "$pid" ] '
    '&& kill -0 "$pid" 2>/dev/null '
    '&& ! grep -q "^State:[[:space:]]*Z" "/proc/$pid/status" 2>/dev/null; }\n'
)

_POLL_SECONDS = 0.05


def _script(pidfile: str, body: str) -> list[str]:
    return ["sh", "-c", f"PIDFILE={shlex.quote(pidfile)}\n{_RUNNING}{body}"]


def _wait_gone(timeout: float) -> str:
    """Shell that polls until the daemon is gone or ``timeout`` seconds have passed."""
    polls = max(1, int(timeout / _POLL_SECONDS))
    return (f'i=0; while running && [ "$i" -lt {polls} ]; '
            f'do sleep {_POLL_SECONDS}; i=$((i+1)); done\n')


def start_daemon(remote: Remote, node: str, argv: Sequence[str], *, pidfile: str,
                 logfile: str, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> int:
    """Starts ``argv`` detached on ``node`` and returns its pid.

    stdout and stderr are appended to ``logfile``; the pid is written to ``pidfile``. The
    call returns as soon as the pid file is written, not when the daemon serves: callers
    wait for readiness their own way (a port, a health request).
    """
    if not argv:
        raise ValueError("start_daemon needs a command")
    if not (posixpath.isabs(pidfile) and posixpath.isabs(logfile)):
        raise ValueError("pidfile and logfile must be absolute paths (cwd changes them)")
    q = shlex.quote
    env_prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    command = " ".join(q(a) for a in [*env_prefix, *argv])
    dirs = {posixpath.dirname(pidfile) or ".", posixpath.dirname(logfile) or "."}
    body = (
        f"mkdir -p {' '.join(q(d) for d in sorted(dirs))} || exit 1\n"
        + (f"cd {q(cwd)} || exit 1\n" if cwd else "")
        + 'rm -f "$PIDFILE"\n'
        # The inner shell records its own pid and then becomes the daemon.
        + f"setsid sh -c 'echo $$ > \"$0\"; exec \"$@\"' \"$PIDFILE\" {command}"
        + f" >> {q(logfile)} 2>&1 < /dev/null &\n"
        + 'i=0; while [ ! -s "$PIDFILE" ] && [ "$i" -lt 200 ]; '
        + 'do sleep 0.01; i=$((i+1)); done\n'
        + 'cat "$PIDFILE"\n'
    )
    result = remote.run(node, _script(pidfile, body), check=False)
    pid = result.stdout.strip()
    if result.returncode != 0 or not pid.isdigit():
        raise RemoteError(
            f"{node}: could not start {argv[0]}: {result.stderr.strip() or 'no pid written'}"
        )
    return int(pid)


def daemon_running(remote: Remote, node: str, pidfile: str) -> bool:
    """Whether the process named by ``pidfile`` is alive (zombies count as dead)."""
    return remote.run(node, _script(pidfile, "running\n"), check=False).returncode == 0


def signal_daemon(remote: Remote, node: str, pidfile: str, sig: int) -> bool:
    """Sends ``sig`` to the daemon's process group; False if it was not running."""
    body = f'running || exit 3\nkill -{int(sig)} -"$pid" 2>/dev/null || kill -{int(sig)} "$pid"\n'
    return remote.run(node, _script(pidfile, body), check=False).returncode == 0


def kill_daemon(remote: Remote, node: str, pidfile: str) -> None:
    """SIGKILLs the daemon's process group and waits until it is gone. Idempotent.

    The pid file stays, as a crashed process would leave it; ``start_daemon`` replaces it.
    """
    sigkill = int(signal.SIGKILL)
    body = (
        f'if running; then kill -{sigkill} -"$pid" 2>/dev/null || kill -{sigkill} "$pid"; fi\n'
        + _wait_gone(10.0)
        + "! running\n"
    )
    if remote.run(node, _script(pidfile, body), check=False, timeout=30).returncode != 0:
        raise RemoteError(f"{node}: daemon of {pidfile} survived SIGKILL")


def stop_daemon(remote: Remote, node: str, pidfile: str, *, timeout: float = 5.0) -> None:
    """SIGTERM (and SIGCONT, in case it is paused), then SIGKILL after ``timeout``.

    Idempotent; removes the pid file.
    """
    term, cont, kill = int(signal.SIGTERM), int(signal.SIGCONT), int(signal.SIGKILL)
    body = (
        "if running; then\n"
        f'  kill -{term} -"$pid" 2>/dev/null || kill -{term} "$pid"\n'
        f'  kill -{cont} -"$pid" 2>/dev/null || kill -{cont} "$pid" 2>/dev/null\n'
        + "  " + _wait_gone(timeout)
        + f'  if running; then kill -{kill} -"$pid" 2>/dev/null || kill -{kill} "$pid"; fi\n'
        + "  " + _wait_gone(10.0)
        + "fi\n"
        + "running && exit 1\n"
        + 'rm -f "$PIDFILE"\n'
    )
    result = remote.run(node, _script(pidfile, body), check=False, timeout=timeout + 30)
    if result.returncode != 0:
        raise RemoteError(f"{node}: daemon of {pidfile} survived SIGTERM and SIGKILL")


def node_python(remote: Remote, node: str) -> str:
    """The path of ``python3`` on the node, found there: the controller's own
    interpreter need not exist on a container or a remote host."""
    found = remote.run(node, ["sh", "-c", "command -v python3"], check=False)
    path = found.stdout.strip()
    if found.returncode != 0 or not path:
        raise EnvironmentFailure(f"node {node} lacks python3 (apt-get install python3)")
    return path
