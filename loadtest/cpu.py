"""CPU used by process trees during a measurement (psutil), in cores."""

from __future__ import annotations

import threading
import time

import psutil


class CpuMeter:
    """Samples the CPU time of named process trees (root + all descendants, or the root
    alone: `watch(..., tree=False)`) until stopped. Processes that exit between samples
    lose at most one interval.

        meter = CpuMeter()
        meter.watch("server", server_pid)
        with meter:
            ...
        meter.cores("server")   # average cores busy over the measurement (1.0 = one core)
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.roots: dict[str, int] = {}
        self.alone: set[str] = set()  # names whose root is measured without descendants
        # name -> pid -> [cpu seconds at first sight, latest cpu seconds]
        self._seen: dict[str, dict[int, list[float]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.stopped = 0.0

    def watch(self, name: str, pid: int, tree: bool = True) -> None:
        """`tree=False`: `pid` alone, e.g. a generator whose child is the server."""
        self.roots[name] = pid
        if not tree:
            self.alone.add(name)
        self._seen.setdefault(name, {})
        if self._thread is not None:  # started already: count from now, pids are new
            self._sample(name, pid, new_is_zero=True)

    def _sample(self, name: str, root: int, new_is_zero: bool) -> None:
        try:
            proc = psutil.Process(root)
            procs = [proc] if name in self.alone else [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return
        seen = self._seen[name]
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total = t.user + t.system
            if p.pid not in seen:
                seen[p.pid] = [0.0 if new_is_zero else total, total]
            else:
                seen[p.pid][1] = total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for name, root in list(self.roots.items()):
                self._sample(name, root, new_is_zero=True)

    def start(self) -> CpuMeter:
        for name, root in self.roots.items():
            self._sample(name, root, new_is_zero=False)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for name, root in list(self.roots.items()):
            self._sample(name, root, new_is_zero=True)
        self.stopped = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cpu_seconds(self, name: str) -> float:
        return sum(last - first for first, last in self._seen.get(name, {}).values())

    def cores(self, name: str) -> float:
        wall = (self.stopped or time.monotonic()) - self.started
        return self.cpu_seconds(name) / wall if wall > 0 else 0.0
