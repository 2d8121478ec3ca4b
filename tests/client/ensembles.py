"""Real published ensembles for client and load tests: the tiny fine-tuned checkpoints
of tests/fixtures/checkpoints.py (shared, built once per session) exported by
`python -m export` into one repository, served by serving.server.TritonServer."""

from __future__ import annotations

from pathlib import Path

SINGLE = "sentiment"
MULTI = "tags"
# The sentiment checkpoint in window mode (tests/export/checkpoints.py WINDOWS), fp32
# served: long texts are cut into windows and aggregated inside Triton, in the
# classifier step (CPU configs: berth's backend) or, as the native backend needs it
# (GPU configs; here `--no-ragged` CPU configs), in a third step.
LONG = "reviews"
LONG_STEPS = "reviews_steps"
EXTRA_ARGS = {
    LONG: ["--default-variant", "fp32"],
    # pip: padded batches, windows in a third step; default configs: the flat graph's
    # ragged batches (the native backend's form)
    LONG_STEPS: ["--default-variant", "fp32", "--no-ragged", "--container-ragged"],
}
# Every test ensemble waits up to 2 s in a queue instead of the published 0.5 s: on the
# shared 2-core machine the served ensemble now and then stalls for about 0.5 s, fresh
# or warm (RELIABILITY.md, known limits), and the default then refuses the requests
# waiting. These tests are about what is served; tests/reliability has the queue's own.
QUEUE_TIMEOUT = ["--queue-timeout-us", "2000000"]


def publish(
    repository: Path, name: str, checkpoint: Path, extra_args: list[str] | None = None
) -> None:
    """`python -m export` (in-process) with quick gates: fp32 + int8, int8 served.
    `extra_args` are further export flags (e.g. tests/reliability's queue limits)."""
    from export.__main__ import main as export_main

    code = export_main([
        "--checkpoint", str(checkpoint), "--name", name,
        "--model-repository", str(repository),
        "--output-dir", str(repository.parent / f"{name}-export"),
        "--variants", "fp32,int8", "--default-variant", "int8", "--gpu-variant", "int8",
        "--optimize", "off", "--latency-runs", "1", "--max-eval-samples", "64",
        "--parity-samples", "32",
        # On 64 rows one flipped row is 1.6 points, and int8 flips one on some CPUs
        # (an Intel Xeon, not an AMD EPYC): these tests are about serving; the gate has its own.
        "--max-accuracy-drop", "5",
        *QUEUE_TIMEOUT,
        *(extra_args or []),
    ])  # fmt: skip
    assert code == 0, f"python -m export failed for {name} (exit {code})"
