"""The export report: export_report.json (its keys are read by other code and tests:
keep them) and the same as a markdown table."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from export.triton_config import window_parameters
from export.variants import REFERENCE

if TYPE_CHECKING:
    from export.build import Graphs
    from export.gates import GateOutcome
    from export.pipeline import ExportRun
    from export.score import VariantScore


def build_report(
    run: ExportRun, graphs: Graphs, scores: Sequence[VariantScore], gates: GateOutcome
) -> dict:
    """Everything the export measured and decided, as export_report.json has it."""
    cfg, berth = run.cfg, run.berth
    return {
        "name": cfg.name,
        "checkpoint": str(cfg.checkpoint),
        "labels": list(berth.labels),
        "problem_type": berth.problem_type,
        "thresholds": berth.decision_thresholds() if berth.multi_label else None,
        "eval_file": str(run.eval_file),
        "eval_rows": len(run.eval_texts),
        "parity_texts": len(run.parity_texts),
        "parity_tolerance": cfg.parity_tolerance,
        "max_accuracy_drop": cfg.max_accuracy_drop,
        "opset": cfg.opset,
        "threads": cfg.threads,
        "max_length": berth.max_length,
        "windows": window_parameters(berth),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "fusion": graphs.fusion.record(),
        "int8_graph": graphs.int8.record(),
        "variants": [variant_record(s, gates) for s in scores],
        "refusals": gates.refusals,
        "status": "refused" if gates.fatal else ("no-publish" if cfg.no_publish else "published"),
        "config": cfg.record(),
    }


def variant_record(score: VariantScore, gates: GateOutcome) -> dict:
    verdict = gates.of(score.variant)
    return {**score.record(), "drop": verdict.drop, "verdict": verdict.verdict}


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """export_report.{json,md} in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "export_report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = out / "export_report.md"
    md_path.write_text(report_markdown(report))
    return json_path, md_path


def report_markdown(report: dict) -> str:
    """export_report.md: the JSON report (as written, or read back) as a table."""
    lines = [
        f"# Export report: {report['name']}",
        "",
        f"- checkpoint: `{report['checkpoint']}`",
        f"- problem type: {report['problem_type']}, labels: {', '.join(report['labels'])}",
        f"- held-out rows scored: {report['eval_rows']} (`{report['eval_file']}`), "
        f"parity texts: {report['parity_texts']}",
        f"- machine: {report['machine']}, onnxruntime threads: {report['threads'] or 'default'}",
        f"- fusions: {report['fusion'].get('decision', report['fusion']['mode'])}",
        f"- long texts: {windows_line(report['windows'], report['max_length'])}",
        *(
            [f"- {report['int8_graph']['decision']}"]
            if report.get("int8_graph", {}).get("decision")
            else []
        ),
        f"- status: **{report['status']}**"
        + (f", published as version {report['version']}" if report.get("version") else ""),
        "",
        f"| variant | size MB | metric | Δ vs {REFERENCE} (pts) | max abs Δlogit vs PyTorch | "
        "argmax agree | agrees with teacher | batch 1 ms | batch 32 ms | texts/s @32 | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in report["variants"]:
        s = v["scores"]
        metric = ", ".join(
            f"{k} {s[k]:.2f}" for k in ("accuracy", "micro_f1", "macro_f1") if k in s
        )
        lines.append(
            f"| {v['variant']} | {v['size_mb']:.1f} | {metric} | {-v['drop'] or 0.0:+.2f} | "
            f"{v['parity']['max_abs_logit_diff']:.2e} | "
            f"{100 * v['parity']['argmax_agreement']:.1f} % | "
            f"{_percent(s.get('teacher_agreement'))} | "
            f"{v['latency']['batch_1']['median_ms']:.2f} | "
            f"{v['latency']['batch_32']['median_ms']:.2f} | "
            f"{v['latency']['batch_32']['texts_per_s']:.0f} | {v['verdict']} |"
        )
    if report.get("refusals"):
        lines += ["", "## Refused", ""] + [f"- {r}" for r in report["refusals"]]
    lines.append("")
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.2f} %"


def windows_line(windows: dict, max_length: int) -> str:
    if windows["max_windows"] <= 1:
        return f"one window of {max_length} tokens (the rest truncated)"
    return (
        f"up to {windows['max_windows']} windows of {max_length} tokens, "
        f"{windows['window_stride']} apart, aggregated by {windows['aggregation']}"
    )
