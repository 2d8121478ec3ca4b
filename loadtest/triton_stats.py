"""Where the time goes inside Triton: per-model deltas of `/v2/models/stats` over a run
(executions, mean batch size, queue and compute time per execution).

Triton accumulates `inference_stats` per request: every request of a batched execution
is charged the whole execution's compute time. Per-execution compute time is therefore
`compute_*_ns / requests`, not `/ executions`."""

from __future__ import annotations

import json
import urllib.request

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def snapshot(http_url: str, timeout: float = 10.0) -> dict[str, dict]:
    """{model: {"inferences", "executions", "<phase>_ns"...}}; {} when unreachable."""
    url = http_url if "://" in http_url else f"http://{http_url}"
    try:
        with urllib.request.urlopen(f"{url}/v2/models/stats", timeout=timeout) as response:
            raw = json.loads(response.read())
    except (OSError, ValueError):
        return {}
    out = {}
    for model in raw.get("model_stats", []):
        stats = model.get("inference_stats", {})
        entry = {
            "inferences": int(model.get("inference_count", 0)),
            "executions": int(model.get("execution_count", 0)),
            "requests": int(stats.get("success", {}).get("count", 0)),
        }
        for phase in PHASES:
            entry[f"{phase}_ns"] = int(stats.get(phase, {}).get("ns", 0))
        out[model["name"]] = entry
    return out


def delta(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    return {
        name: {k: v - before.get(name, {}).get(k, 0) for k, v in entry.items()}
        for name, entry in after.items()
    }


def table(diff: dict[str, dict]) -> str:
    """Markdown: per model with traffic, mean batch and µs per request / execution."""
    lines = [
        "| model | requests | executions | mean batch | queue µs/req | infer µs/exec |"
        " in+out µs/exec |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, d in sorted(diff.items()):
        if not d["executions"]:
            continue
        execs, reqs = d["executions"], max(d["requests"], 1)
        lines.append(
            f"| {name} | {d['requests']:,} | {execs:,} | {d['inferences'] / execs:.1f} | "
            f"{d['queue_ns'] / reqs / 1e3:,.0f} | {d['compute_infer_ns'] / reqs / 1e3:,.0f} | "
            f"{(d['compute_input_ns'] + d['compute_output_ns']) / reqs / 1e3:,.0f} |"
        )
    return "\n".join(lines)
