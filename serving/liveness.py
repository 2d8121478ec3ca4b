"""Is a running tritonserver really able to answer? Stdlib only, Linux `/proc`.

Triton 24.10's Python backend does not restart a stub process that died (killed, OOM
killer, a crash in native code): the model stays READY, `/v2/health/ready` keeps
answering 200, and every request to the model fails after ~1 s with
"Stub process '<model>_0_0' is not healthy" (triton-inference-server/server#8604).
Reloading does not repair it (an explicit load of unchanged files is a no-op, a
poll-mode reload of the broken model never finishes); a new server process does.

The dead stub stays behind as a zombie child of `tritonserver` (Triton reaps only the
stubs it stops itself), so a zombie `triton_python_backend_stub` child is the signal.
`serving.server.TritonServer(watchdog=True)` (`python -m serving`, on by default) restarts
the server when it sees one; in a container, run this file as the liveness check
(docker/Dockerfile's HEALTHCHECK, or a Kubernetes `livenessProbe` exec):

    python3 liveness.py --url http://127.0.0.1:8000    # exit 0 live, 1 not
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# /proc/<pid>/comm keeps the first 15 characters of "triton_python_backend_stub"
STUB_COMM = "triton_python_backend_stub"[:15]
SERVER_COMM = "tritonserver"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    comm: str
    state: str  # "R", "S", "Z", ... (proc(5))


def read_stat(stat: str) -> ProcessInfo:
    """Parse a `/proc/<pid>/stat` line; `comm` may hold spaces and parentheses."""
    head, _, rest = stat.rpartition(")")
    pid, _, comm = head.partition(" (")
    fields = rest.split()
    return ProcessInfo(pid=int(pid), ppid=int(fields[1]), comm=comm, state=fields[0])


def processes(proc: Path = PROC) -> list[ProcessInfo]:
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found.append(read_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
    return found


def dead_stubs(server_pid: int, proc: Path = PROC) -> list[int]:
    """PIDs of the Python-backend stubs of `server_pid` that have died (zombies)."""
    return sorted(
        p.pid
        for p in processes(proc)
        if p.ppid == server_pid and p.comm.startswith(STUB_COMM) and p.state == "Z"
    )


def servers(proc: Path = PROC) -> list[int]:
    return sorted(p.pid for p in processes(proc) if p.comm == SERVER_COMM)


def ready(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/v2/health/ready", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="liveness.py",
        description="Exit 1 when a tritonserver on this machine has a dead Python-backend "
        "stub (its model fails every request while /v2/health/ready says 200) or the "
        "server is not ready; exit 0 otherwise.",
    )
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the server's HTTP address (default: http://127.0.0.1:8000)",
    )
    args = parser.parse_args(argv)
    for pid in servers():
        dead = dead_stubs(pid)
        if dead:
            print(f"tritonserver {pid}: Python-backend stub(s) {dead} died", file=sys.stderr)
            return 1
    if not ready(args.url):
        print(f"{args.url}/v2/health/ready did not answer 200", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
