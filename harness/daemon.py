"""Starting, signalling and stopping long-running processes on a node: the whole system.

Everything goes through ``Remote.run`` with small POSIX ``sh`` scripts, so the same code
works for network namespaces, containers and SSH hosts. Every user-supplied value is
``shlex.quote``d into the script; nothing is concatenated unquoted.

A fault must reach every process of the system, not only the one the pid file names:
PostgreSQL's backends each call ``setsid()``, so signalling the daemon's process group
leaves busy backends answering after a "kill", and a "pause" that stops only the
postmaster leaves open connections served. So a daemon's processes are found, every
time, as the union of

* the pid file's process, the root (checked against the start time recorded next to the
  pid file, so a recycled pid is never taken for it);
* every process whose environment carries ``SPLITBRAIN_DAEMON=<pid file>``: the tag is set
  at start and inherited across fork and ``setsid``, so it finds orphans that were
  reparented away from the tree (a double-forking server, survivors of a dead root);
* every descendant of those, by parent pid: servers that rewrite their environment
  area for ``ps`` (PostgreSQL's backends, Redis) lose the tag, but not their parent.

What neither finds is a process that both scrubbed its environment and lost its parent.
Reading another user's environment needs CAP_SYS_PTRACE, which root has on a host but not
in a default container; there the parent links (and root-owned processes' tags) carry
it, which is enough for PostgreSQL, whose root (``runuser``) is the postmaster's parent.
A cgroup per daemon would be exact, but a container's cgroup tree is read-only and an
SSH host's may be v1, so it cannot be the one mechanism every backend shares; process
groups and sessions are what servers leave (``setsid``).

The set is taken apart safely by freezing it first: SIGSTOP to every member, again and
again until a pass finds the same members, all stopped; a stopped process cannot fork, so
nothing escapes while SIGKILL lands. The frozen members are remembered (pid and start
time) for the rest of that script, so one whose parent dies first is still followed.
Zombies count as gone (an orphan's reaper may be a PID 1 that never reaps), and a
process in uninterruptible sleep is waited for.
"""

from __future__ import annotations

import posixpath
import shlex
import signal
from collections.abc import Sequence

from harness.cluster.remote import Remote, RemoteError
from harness.errors import EnvironmentFailure

TAG_VARIABLE = "SPLITBRAIN_DAEMON"
"""The environment variable naming the daemon (its pid file) in each of its processes."""

# Shell functions shared by the scripts below; the scripts set PIDFILE first.
# fields/state/started read /proc/PID/stat past the command name, which may hold spaces
# and parentheses (hence the last ") "), without forking. root: "$PIDFILE" names a
# process started at the recorded time (sets $pid). running: and it is not a zombie.
# members: the daemon's living processes, as described in the module docstring.
# (Shell variables are global: each function's loop variable is one no caller uses.)
_LIB = f'TAG="{TAG_VARIABLE}=$PIDFILE"\nKNOWN=\n' + r'''
fields() { f=; read -r f 2>/dev/null < "/proc/$1/stat" || return 1; f=${f##*) }; }
state() { fields "$1" && st=${f%% *}; }
started() { fields "$1" || return 1; set -- $f; start=${20}; }
root() {
  pid=$(cat "$PIDFILE" 2>/dev/null) && [ -n "$pid" ] && started "$pid" || return 1
  [ "$start" = "$(cat "$PIDFILE.start" 2>/dev/null)" ]
}
running() { root && state "$pid" && [ "$st" != Z ] && [ "$st" != X ]; }
add() { case "$ids" in *" $1 "*) return 1;; *) ids="$ids$1 ";; esac; }
members() {
  ids=" "
  if root; then add "$pid"; fi
  for k in $KNOWN; do
    started "${k%%:*}" && [ "$start" = "${k#*:}" ] && add "${k%%:*}"
  done
  for e in $(grep -lzxF "$TAG" /proc/[0-9]*/environ 2>/dev/null); do
    e=${e#/proc/}; add "${e%/environ}"
  done
  [ "$ids" = " " ] && return 0
  table=$(grep -H '^PPid:' /proc/[0-9]*/status 2>/dev/null \
          | sed -n 's|^/proc/\([0-9]*\)/status:PPid:[[:space:]]*\([0-9]*\)$|\1 \2|p')
  grew=1
  while [ "$grew" = 1 ]; do
    grew=0
    while read -r c p; do
      case "$ids" in *" $p "*) add "$c" && grew=1;; esac
    done <<EOF
$table
EOF
  done
  out=
  for q in $ids; do
    [ "$q" = 1 ] || [ "$q" = "$$" ] && continue
    state "$q" && [ "$st" != Z ] && [ "$st" != X ] && out="$out $q"
  done
  echo $out
}
all_in() {  # all_in STATES PID...: every pid that still exists is in one of STATES
  states=$1; shift
  for q in "$@"; do
    state "$q" || continue
    case "$states" in *"$st"*) ;; *) return 1;; esac
  done
}
freeze() {  # SIGSTOP until a pass sees the same members, all stopped; 1 if none exist
  prev=x; i=0
  while [ "$i" -lt 200 ]; do
    m=$(members)
    [ -n "$m" ] || { [ "$prev" != x ]; return; }
    kill -STOP $m 2>/dev/null
    for k in $m; do
      case " $KNOWN " in *" $k:"*) ;; *) started "$k" && KNOWN="$KNOWN $k:$start";; esac
    done
    [ "$m" = "$prev" ] && all_in TtZX $m && return 0
    prev=$m; i=$((i+1))
    sleep 0.01
  done
}
gone() {  # gone POLLS: polls every 0.05 s until no member is left; 1 if some remain
  i=0
  while [ -n "$(members)" ]; do
    [ "$i" -ge "$1" ] && return 1
    sleep 0.05; i=$((i+1))
  done
}
slay() {  # freeze, SIGKILL every member (stopped ones die too), until none is left
  freeze
  i=0
  while m=$(members) && [ -n "$m" ] && [ "$i" -lt 100 ]; do
    kill -KILL $m 2>/dev/null; sleep 0.05; i=$((i+1))
  done
  gone 200
}
'''

_INNER = ('cut -d" " -f22 /proc/$$/stat > "$0.start" && echo $$ > "$0" && exec "$@"')
"""The daemon's first shell records its start time, then its pid, then becomes the daemon
(the command name in its stat line is "sh", so plain field numbers are safe)."""


def _script(pidfile: str, body: str) -> list[str]:
    return ["sh", "-c", f"PIDFILE={shlex.quote(pidfile)}\n{_LIB}{body}"]


def _run(remote: Remote, node: str, pidfile: str, body: str, timeout: float = 60) -> int:
    return remote.run(node, _script(pidfile, body), check=False, timeout=timeout).returncode


def start_daemon(remote: Remote, node: str, argv: Sequence[str], *, pidfile: str,
                 logfile: str, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> int:
    """Starts ``argv`` detached on ``node`` (in a session of its own) and returns its pid.

    stdout and stderr are appended to ``logfile``; the pid is written to ``pidfile`` and
    the process carries ``SPLITBRAIN_DAEMON=<pidfile>`` in its environment. The call
    returns as soon as the pid file is written, not when the daemon serves: callers wait
    for readiness their own way (a port, a health request).
    """
    if not argv:
        raise ValueError("start_daemon needs a command")
    if not (posixpath.isabs(pidfile) and posixpath.isabs(logfile)):
        raise ValueError("pidfile and logfile must be absolute paths (cwd changes them)")
    q = shlex.quote
    variables = {**(env or {}), TAG_VARIABLE: pidfile}
    command = " ".join(q(a) for a in ["env", *(f"{k}={v}" for k, v in variables.items()),
                                      "sh", "-c", _INNER, pidfile, *argv])
    dirs = {posixpath.dirname(pidfile) or ".", posixpath.dirname(logfile) or "."}
    body = (
        f"mkdir -p {' '.join(q(d) for d in sorted(dirs))} || exit 1\n"
        + (f"cd {q(cwd)} || exit 1\n" if cwd else "")
        + 'rm -f "$PIDFILE" "$PIDFILE.start"\n'
        + f"setsid {command} >> {q(logfile)} 2>&1 < /dev/null &\n"
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
    """Whether the process the pid file names, started by us, is alive (not a zombie)."""
    return _run(remote, node, pidfile, "running\n") == 0


def daemon_processes(remote: Remote, node: str, pidfile: str) -> list[int]:
    """The pids of every living process of the daemon on ``node`` (see the module doc)."""
    result = remote.run(node, _script(pidfile, "members\n"), check=False)
    if result.returncode != 0:
        raise RemoteError(f"{node}: cannot list the processes of {pidfile}: "
                          f"{result.stderr.strip()}")
    return sorted(int(p) for p in result.stdout.split())


def signal_daemon(remote: Remote, node: str, pidfile: str, sig: int) -> bool:
    """Sends ``sig`` to every process of the daemon; False if none was alive.

    SIGSTOP freezes the whole set (repeated until no new process appears and every one
    is stopped); SIGCONT continues every one, repeated until none is left stopped.
    """
    if sig == signal.SIGSTOP:
        body = "freeze\n"
    elif sig == signal.SIGCONT:
        body = ('m=$(members); [ -n "$m" ] || exit 3\n'
                'i=0; until all_in RSDIWPKZX $m || [ "$i" -ge 100 ]; do\n'
                f'  kill -{int(signal.SIGCONT)} $m 2>/dev/null; sleep 0.01; i=$((i+1))\n'
                '  m=$(members)\ndone\n')
    else:
        body = f'm=$(members); [ -n "$m" ] || exit 3\nkill -{int(sig)} $m 2>/dev/null; :\n'
    return _run(remote, node, pidfile, body, timeout=30) == 0


def kill_daemon(remote: Remote, node: str, pidfile: str) -> None:
    """SIGKILLs every process of the daemon (frozen first) and waits until all are gone.

    Idempotent. The pid file stays, as a crashed process would leave it; ``start_daemon``
    replaces it.
    """
    if _run(remote, node, pidfile, "slay\n", timeout=60) != 0:
        raise RemoteError(f"{node}: processes of the daemon of {pidfile} survived SIGKILL")


def stop_daemon(remote: Remote, node: str, pidfile: str, *, timeout: float = 5.0) -> None:
    """SIGTERM to every process of the daemon, then SIGCONT (in case they were paused),
    as a service manager stops a control group; up to ``timeout`` seconds for every
    process to end, then ``kill_daemon``'s way. The set is frozen before the SIGTERM, so
    every member gets it and is remembered, even one its parent's exit orphans.

    Idempotent; removes the pid file.
    """
    term, cont = int(signal.SIGTERM), int(signal.SIGCONT)
    body = (
        f'if freeze; then m=$(members); kill -{term} $m; kill -{cont} $m; fi 2>/dev/null\n'
        f"gone {max(1, int(timeout / 0.05))} || slay || exit 1\n"
        'rm -f "$PIDFILE" "$PIDFILE.start"\n'
    )
    if _run(remote, node, pidfile, body, timeout=timeout + 60) != 0:
        raise RemoteError(f"{node}: daemon of {pidfile} survived SIGTERM and SIGKILL")


def node_python(remote: Remote, node: str) -> str:
    """The path of ``python3`` on the node, found there: the controller's own
    interpreter need not exist on a container or a remote host."""
    found = remote.run(node, ["sh", "-c", "command -v python3"], check=False)
    path = found.stdout.strip()
    if found.returncode != 0 or not path:
        raise EnvironmentFailure(f"node {node} lacks python3 (apt-get install python3)")
    return path
