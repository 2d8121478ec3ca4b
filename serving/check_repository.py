"""`python -m serving.check_repository`: judge a repository as the container would load it.

Model by model, as the stock NVIDIA container's Triton would judge it at load time,
without serving it.

For the configurations this machine cannot load (configs/gpu.pbtxt: KIND_GPU, TensorRT),
and as a quick check before shipping any repository: every onnxruntime model's config
against its graph (the native backend's rules, serving/conformance) and every ensemble's
wiring (Triton core's). `python -m serving --container-configs` serves the default
configs under the same rules.

    python -m serving.check_repository --model-repository model_repository
    python -m serving.check_repository --model-repository model_repository --model-config-name gpu

Exit codes: 0 every model passes, 1 a model is refused (each refusal printed), 2 no
such repository.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from berth_args import option, parse_config
from berth_core.errors import EXIT_FAILED, EXIT_OK, InputError, run_command
from berth_core.names import CONFIG_FILE
from serving import conformance
from serving.served_models import config_text

# ModelConfigToJson (core model_config_utils.cc) prints these 64-bit fields as numbers.
INT64_FIELDS = frozenset(
    {
        "dims",
        "shape",
        "versions",
        "max_queue_delay_microseconds",
        "default_timeout_microseconds",
        "priority_levels",
        "default_priority_level",
        "max_sequence_idle_microseconds",
        "model_version",
    }
)


def _int64(node):
    if isinstance(node, list):
        return [_int64(item) for item in node]
    return int(node) if isinstance(node, str) else _fix_int64(node)


def _fix_int64(node):
    if isinstance(node, dict):
        return {k: _int64(v) if k in INT64_FIELDS else _fix_int64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_int64(item) for item in node]
    return node


def config_dict(text: str) -> dict:
    """A config.pbtxt as Triton hands it to a Python backend (`args["model_config"]`):
    proto field names, fields without presence printed with their defaults, 64-bit ints
    as numbers (core ModelConfigToJson)."""
    message = text_format.Parse(text, model_config_pb2.ModelConfig())
    as_json = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _fix_int64(as_json)


def model_configs(repository: Path, config_name: str | None) -> dict[str, dict]:
    """Each model's configuration as Triton picks it: `configs/<config_name>.pbtxt` where
    the model has one, else its `config.pbtxt`."""
    return {
        model.name: config_dict(config_text(model, config_name))
        for model in sorted(p for p in repository.iterdir() if (p / CONFIG_FILE).is_file())
    }


def latest_version(model: Path) -> Path | None:
    versions = [p for p in model.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name), default=None)


def check_classifier(model: Path, config: dict) -> list[conformance.Violation]:
    """The native backend's rules for `config` against the graph of the latest version."""
    version = latest_version(model)
    if version is None:
        source = "core src/model_repository_manager/model_repository_manager.cc"
        return [conformance.Violation("repository.version", f"{model}: no version", source)]
    missing = conformance.check_model_file(version, config)
    if missing:
        return missing
    graph = conformance.GraphIO.from_path(conformance.native_model_path(version, config))
    return conformance.check_onnxruntime_model(config, graph)


def check_repository(
    repository: Path, config_name: str | None = None
) -> dict[str, list[conformance.Violation]]:
    """model name → what Triton (native onnxruntime backend, core's ensemble rules)
    would refuse of it; models it would load have no entry."""
    configs = model_configs(repository, config_name)
    refused = {}
    for name, config in configs.items():
        if config.get("backend") == "onnxruntime":
            violations = check_classifier(repository / name, config)
        elif config.get("platform") == "ensemble":
            steps = config.get("ensemble_scheduling", {}).get("step", [])
            members = {s["model_name"]: configs[s["model_name"]] for s in steps
                       if s["model_name"] in configs}  # fmt: skip
            violations = conformance.check_ensemble(config, members)
        else:
            continue
        if violations:
            refused[name] = violations
    return refused


@dataclass
class CheckConfig:
    """Everything `python -m serving.check_repository` accepts."""

    model_repository: Path = option(Path("model_repository"), "the repository to judge")
    model_config_name: str | None = option(
        None,
        "judge each model's configs/<NAME>.pbtxt where it has one (e.g. gpu), as "
        "`tritonserver --model-config-name` would load it; default: config.pbtxt",
    )


def judge(cfg: CheckConfig) -> int:
    if not cfg.model_repository.is_dir():
        raise InputError(f"no model repository at {cfg.model_repository}")
    refused = check_repository(cfg.model_repository, cfg.model_config_name)
    layout = f"configs/{cfg.model_config_name}.pbtxt" if cfg.model_config_name else CONFIG_FILE
    for name, violations in refused.items():
        print(f"{name}: refused\n{conformance.refusal(violations)}", file=sys.stderr)
    if refused:
        return EXIT_FAILED
    print(f"{cfg.model_repository} ({layout}): every model loads as the native backend takes it")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        CheckConfig, argv, "python -m serving.check_repository", __doc__.splitlines()[0]
    )
    return run_command(lambda: judge(cfg))


if __name__ == "__main__":
    sys.exit(main())
