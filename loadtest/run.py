"""`python -m loadtest`: a headless Locust run against a served berth ensemble, with
HTML/CSV reports and an SLO gate.

    python -m loadtest --host 127.0.0.1:8000 --model sentiment --users 64 \
        --duration 60s --target-rps 1000 --p99-ms 100 --max-failure-rate 0

Exit code 0 when every SLO is met, 1 when one is missed (the summary names it and the
figure), 2 on a usage or set-up error. `--model-repository DIR` starts a tritonserver
on that repository first (serving.server.TritonServer) and stops it afterwards.

`--arrival-rate R` runs the open loop instead (loadtest.open_loop): R requests a second
on a fixed schedule whatever the answers, reporting goodput (answers within --p99-ms per
second) and exiting 1 when `--min-goodput` is missed.

`--soak 30m` runs the open loop that long at --soak-load (0.7) of the capacity a short
closed loop measures first, or at `--arrival-rate R`, sampling the server's memory,
descriptors, stubs, throughput and latency every `--soak-interval` (loadtest.soak) and
exiting 1 when RSS or descriptors grow.
"""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.closed_loop import main_closed_loop
from loadtest.config import parse_args
from loadtest.open_loop_run import main_open_loop
from loadtest.soak_run import main_soak


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.soak is not None:
        return main_soak(cfg)
    if cfg.arrival_rate is not None:
        return main_open_loop(cfg)
    return main_closed_loop(cfg)
