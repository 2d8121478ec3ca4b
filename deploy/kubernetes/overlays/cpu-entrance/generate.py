"""Write nginx.conf, the entrance each pod runs, from serving/entrance.py: the same
configuration `python -m serving --entrance-max-in-flight` runs, with the pod's ports
(clients 8080/8081, Triton 8000/8001 on loopback) and its limit.

    python deploy/kubernetes/overlays/cpu-entrance/generate.py           # rewrite it
    python deploy/kubernetes/overlays/cpu-entrance/generate.py --check   # exit 1 when stale
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))  # the repository root: serving, berth_core

from serving.entrance import EntranceSettings, render  # noqa: E402

CONF = HERE / "nginx.conf"
# 48 in flight keep 2 cores busy (the closed loop reaches capacity with 48 users) and
# are answered within about 48 / capacity seconds (0.08 s for the demo's student); the
# limit stays below the models' queue depth (64), or Triton would refuse what the
# entrance admitted after tokenizing it. The runs behind it are in RELIABILITY.md.
POD = EntranceSettings(
    48, "127.0.0.1:8000", "127.0.0.1:8001", host="0.0.0.0", http_port=8080, grpc_port=8081
)


def pod_conf() -> str:
    return render(POD, prefix=Path("/tmp"), error_log="stderr")


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if CONF.read_text() != pod_conf():
            print(f"{CONF} is stale: run python {Path(__file__).relative_to(HERE.parents[3])}")
            return 1
        return 0
    CONF.write_text(pod_conf())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
