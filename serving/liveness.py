"""Is a running tritonserver really able to answer? Stdlib only, Linux `/proc`.

Triton 24.10's Python backend does not restart a stub process that died (killed, OOM
killer, a crash in native code): the model stays READY, `/v2/health/ready` keeps
answering 200, and every request to the model fails after ~1 s with
"Stub process '<model>_0_0' is not healthy" (triton-inference-server/server#8604).
Loading the model again as it is does not repair it (explicit mode: a plain load of
unchanged files is a no-op; a load with the served config keeps every instance whose
instance group is unchanged, the dead one included, for Python-backend models). A
reload that creates new instances does, in the same server process: a load whose config
gives the instances a new signature (what the watchdog does, serving/model_control.py),
or, in poll mode, changed files (a new version published, or the config file touched:
seen reloaded and answering again ~2 s later; the watchdog writes nothing there).

The dead stub stays behind as a zombie child of `tritonserver` (Triton reaps only the
stubs it stops itself), so a zombie `triton_python_backend_stub` child is the signal.
`serving.server.TritonServer(watchdog=True)` (`python -m serving`, on by default) reloads
the dead stub's model when it sees one (its model read from the stub's command line,
`live_stubs`, while it lived), or restarts the server where it cannot. The stock
container runs no such watchdog, so there a dead stub costs the pod: run this file as
the liveness check (docker/Dockerfile's HEALTHCHECK, or a Kubernetes `livenessProbe`
exec), and the orchestrator restarts the container:

    python3 liveness.py --url http://127.0.0.1:8000    # exit 0 live, 1 not

Against a server the watchdog repaired it may still say 1: Triton can keep a replaced
dead stub as a zombie for good (seen for a model with two instances).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
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


def stub_processes(server_pid: int, proc: Path = PROC) -> list[ProcessInfo]:
    """The Python-backend stub children of `server_pid`, live or dead (one /proc scan;
    `dead_stubs` and `live_stubs` take it to share one)."""
    return [p for p in processes(proc) if is_stub_of(p, server_pid)]


def is_stub_of(info: ProcessInfo, server_pid: int) -> bool:
    return info.ppid == server_pid and info.comm.startswith(STUB_COMM)


def known_stub_processes(
    server_pid: int, pids: Iterable[int], proc: Path = PROC
) -> list[ProcessInfo]:
    """`stub_processes` for stubs already seen: reads only their own `stat` files (a
    handful of reads instead of all of /proc, so the watchdog can look often); one
    that was reaped, or whose PID now belongs to another process, is left out."""
    found = []
    for pid in pids:
        try:
            info = read_stat((proc / str(pid) / "stat").read_text())
        except (OSError, ValueError, IndexError):  # reaped meanwhile
            continue
        if is_stub_of(info, server_pid):
            found.append(info)
    return found


def dead_stubs(
    server_pid: int, proc: Path = PROC, stubs: list[ProcessInfo] | None = None
) -> list[int]:
    """PIDs of the Python-backend stubs of `server_pid` that have died (zombies)."""
    stubs = stub_processes(server_pid, proc) if stubs is None else stubs
    return sorted(p.pid for p in stubs if p.state == "Z")


@dataclass(frozen=True)
class LiveStub:
    model: str  # the model directory's name
    instance: str  # Triton's instance name, e.g. "sentiment_tokenizer_0_0"


def stub_of(args: list[str]) -> LiveStub | None:
    """The model and instance a stub's command line names: Triton starts it as
    `triton_python_backend_stub <repository>/<model>/<version>/<file> <shm region> <shm
    size> <shm growth> <parent pid> <backend dir> <ipc handle> <instance> ...`."""
    if len(args) < 9 or not Path(args[0]).name.startswith(STUB_COMM):
        return None
    return LiveStub(model=Path(args[1]).parent.parent.name, instance=args[8])


def live_stubs(
    server_pid: int, proc: Path = PROC, stubs: list[ProcessInfo] | None = None
) -> dict[int, LiveStub]:
    """{pid: its model and instance} of the live Python-backend stubs of `server_pid`.
    A dead stub's command line is empty (a zombie keeps none), so whoever wants to know
    which model a dead stub served must have read this while it lived."""
    found = {}
    for p in stub_processes(server_pid, proc) if stubs is None else stubs:
        if p.state == "Z":
            continue
        try:
            raw = (proc / str(p.pid) / "cmdline").read_bytes()
        except OSError:  # exited meanwhile
            continue
        stub = stub_of(raw.decode(errors="replace").split("\0"))
        if stub is not None:
            found[p.pid] = stub
    return found


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
