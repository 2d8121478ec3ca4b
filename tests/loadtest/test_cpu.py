"""loadtest.cpu.CpuMeter: a process tree, or its root alone (the in-process open loop,
whose child may be the tritonserver it started)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from loadtest.cpu import CpuMeter

BUSY = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\n"


def test_a_busy_child_counts_for_the_tree_and_not_for_the_root_alone():
    meter = CpuMeter(interval=0.1)
    meter.watch("tree", os.getpid())
    meter.watch("root", os.getpid(), tree=False)
    with meter:
        child = subprocess.Popen([sys.executable, "-c", BUSY])
        child.wait()
        time.sleep(0.2)
    assert meter.cpu_seconds("tree") - meter.cpu_seconds("root") > 0.5  # the child's loop
    assert meter.cpu_seconds("root") < 0.5  # this process mostly waited
