"""Load only what the ensembles serve.

A berth repository holds every exported classifier variant (`<name>_onnx_fp32`, `_fp16`,
`_int8`) because the CPU and GPU configurations pick different ones; with
`--model-control-mode none` Triton would load them all (fp32 in two instances, fp16 and
int8 on a CPU that runs only int8): memory, start-up time, and the watchdog's restart
after a dead stub, during which every request fails. `served_view` builds a repository
of symlinks that leaves out the variants no ensemble references under the selected
configuration; everything else (ensembles, their members, any other model) stays.
"""

from __future__ import annotations

from pathlib import Path

from berth_core.names import CONFIG_FILE, classifier_model_pattern


def config_text(model_dir: Path, config_name: str | None) -> str | None:
    """The configuration Triton loads for `model_dir`: `configs/<config_name>.pbtxt`
    where the model has one, else its `config.pbtxt` (None when it has neither)."""
    custom = model_dir / "configs" / f"{config_name}.pbtxt" if config_name else None
    path = custom if custom is not None and custom.is_file() else model_dir / CONFIG_FILE
    return path.read_text() if path.is_file() else None


def ensemble_members(config_text: str) -> list[str] | None:
    """The models an ensemble config's steps name; None when it is not an ensemble."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    if config.platform != "ensemble":
        return None
    return [step.model_name for step in config.ensemble_scheduling.step]


def unused_variants(repository: Path, config_name: str | None = None) -> set[str]:
    """`<ensemble>_onnx_<precision>` models that their ensemble does not reference."""
    models = {p.name: p for p in repository.iterdir() if (p / CONFIG_FILE).is_file()}
    unused: set[str] = set()
    for name, path in models.items():
        text = config_text(path, config_name)
        members = ensemble_members(text) if text else None
        if members is None:
            continue
        variant = classifier_model_pattern(name)
        unused |= {m for m in models if variant.fullmatch(m) and m not in members}
    referenced = {
        m
        for path in models.values()
        for m in ensemble_members(config_text(path, config_name) or "") or []
    }
    return unused - referenced


def served_view(repository: Path, target: Path, config_name: str | None = None) -> Path:
    """A repository at `target` whose entries link to `repository`'s, minus the unused
    variants. Triton reads through the links; versions, configs and files stay where
    export published them."""
    skip = unused_variants(repository, config_name)
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(repository.iterdir()):
        if entry.name not in skip and not entry.name.startswith("."):
            (target / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return target
