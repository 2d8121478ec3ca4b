"""Publishing: the passing variants, the tokenizer (and aggregation) models and the
ensemble staged as one new version of every model, then published atomically with
their configs (export/repository.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import berth_core
from berth_core import encoding
from berth_core.checkpoint import BerthConfig
from berth_core.names import FLAT_MODEL_FILE, MODEL_FILE, SESSION_FILE, TOKENIZER_FILE
from export.flat_graph import add_flat_front
from export.progress import say
from export.repository import publish
from export.triton_config import (
    aggregate_model_name,
    classifier_model_name,
    render,
    repository_configs,
    tokenizer_model_name,
)
from export.variants import VARIANTS, Graph

if TYPE_CHECKING:
    from export.config import ExportConfig
    from export.pipeline import ExportRun

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_MODEL_SOURCE = ROOT / "serving" / "tokenizer_model" / "model.py"
AGGREGATE_MODEL_SOURCE = ROOT / "serving" / "aggregate_model" / "model.py"


def stage_versions(
    cfg: ExportConfig,
    berth: BerthConfig,
    graphs: Mapping[str, Graph],
    stage: Path,
    report: dict,
) -> dict[str, Path]:
    """Directories whose contents become the new versions, per model. A graph tuned on
    this machine gets its session settings beside it (session.json), never in the
    (committed) configs, which stay the same whichever CPU exported."""
    if stage.exists():
        shutil.rmtree(stage)
    versions: dict[str, Path] = {}
    tokenizer_json = cfg.checkpoint / TOKENIZER_FILE
    tok = stage / tokenizer_model_name(cfg.name)
    tok.mkdir(parents=True)
    shutil.copy2(TOKENIZER_MODEL_SOURCE, tok / "model.py")
    berth_core.copy_to(tok)
    shutil.copy2(tokenizer_json, tok / TOKENIZER_FILE)
    versions[tok.name] = tok
    if berth.windowed:
        aggregate = stage / aggregate_model_name(cfg.name)
        aggregate.mkdir(parents=True)
        shutil.copy2(AGGREGATE_MODEL_SOURCE, aggregate / "model.py")
        berth_core.copy_to(aggregate)
        versions[aggregate.name] = aggregate
    # --container-ragged: the classifier behind the flat front end, padding with the
    # tokenizer's pad id (masked; the same answers whatever it is)
    pad_id = None
    if cfg.serving.container_ragged:
        _, pad_id = encoding.load_tokenizer_and_pad(str(tokenizer_json))
    for variant, graph in graphs.items():
        model = stage_classifier(stage / classifier_model_name(cfg.name, variant), graph)
        if pad_id is not None and VARIANTS[variant].cpu:
            add_flat_front(graph.path, model / FLAT_MODEL_FILE, pad_id)
        versions[model.name] = model
    ensemble = stage / cfg.name  # the ensemble's version dir: provenance only
    ensemble.mkdir(parents=True)
    berth.save(ensemble)  # as served: the checkpoint's, with export's window settings
    (ensemble / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    versions[cfg.name] = ensemble
    return versions


def stage_classifier(model: Path, graph: Graph) -> Path:
    """A classifier's version directory: its graph, and the session settings measured
    for it on this machine (session.json), if any."""
    model.mkdir(parents=True)
    shutil.copy2(graph.path, model / MODEL_FILE)
    if graph.disabled_optimizers:
        session = {"disabled_optimizers": list(graph.disabled_optimizers)}
        (model / SESSION_FILE).write_text(json.dumps(session) + "\n")
    return model


def publish_variants(
    run: ExportRun, graphs: Mapping[str, Graph], published: list[str], report: dict
) -> int:
    """Write the passing variants as a new version of every model; returns the version."""
    cfg, berth = run.cfg, run.berth
    configs = repository_configs(
        cfg.name,
        berth,
        published,
        cfg.default_variant,
        cfg.gpu_variant,
        cfg.serving,
    )
    texts = {rel: render(c) for rel, c in configs.items()}
    staged = {v: graphs[v] for v in published}
    versions = stage_versions(cfg, berth, staged, run.out / "staged", report)
    version = publish(cfg.model_repository, versions, texts, cfg.keep_versions)
    stale = cfg.model_repository / aggregate_model_name(cfg.name)
    if not berth.windowed and stale.is_dir():
        # a one-window ensemble has no aggregation member; a config left without
        # versions would stop tritonserver from starting ("failed to load all models")
        shutil.rmtree(stale)
    shutil.rmtree(run.out / "staged", ignore_errors=True)
    say(
        f"published {cfg.name} version {version} to {cfg.model_repository} "
        f"(CPU: {cfg.default_variant}, GPU: {cfg.gpu_variant}; variants {published})"
    )
    return version
