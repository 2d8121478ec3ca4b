"""berth's Python onnxruntime runner: a stand-in for Triton's native onnxruntime backend.

The pip `tritonserver` (nvidia-pytriton) has no native onnxruntime backend. Triton loads
a *Python-based backend* from `<backend-dir>/onnxruntime/model.py` for every model whose
config says `backend: "onnxruntime"`; `serving.server` puts this file there (the name
Triton needs), with copies of the `berth_core` and `serving/conformance` packages it
imports. It is not the native backend: it runs `onnxruntime.InferenceSession` on the CPU.

Two ways to run it (`serving.server`):

- strict (`python -m serving --container-configs`, environment `BERTH_RUNNER_STRICT=1`):
  serving a repository as the stock NVIDIA container would, it refuses at load time what
  the native backend refuses (`serving/conformance`: the native backend's own rules,
  from its public source), so a repository that loads here loads there;
- the pip layout (`configs/pip.pbtxt`, `python -m serving`'s default): it also takes
  what only it can do, ragged batches and window aggregation in the classifier step.

What it honours from `config.pbtxt`:

- `default_model_filename` (default `model.onnx`) in the version directory;
- `parameters` `intra_op_thread_count`, `inter_op_thread_count` (as the native backend)
  and `disabled_optimizers` (comma-separated onnxruntime graph optimizers to skip, set by
  hand); sessions run sequential execution, threads never spin-waiting;
- `session.json` in the version directory, next to the graph: `disabled_optimizers` that
  export measured fastest for that graph on its machine (e.g. `SkipLayerNormFusion`,
  whose fused kernel is the slower one on some onnxruntime CPU builds: BENCHMARKS.md),
  skipped as well;
- the declared inputs and outputs: inputs are fed by name, outputs are cast to the
  declared data type;
- `allow_ragged_batch: true` on inputs: with `batch_input`s (default configs exported
  with `--container-ragged`, on `model_flat.onnx`), as the native backend; without
  (pip configs), with the parameter `ragged_run_cost_tokens` (see below);
- `max_run_tokens` (0 or absent: no limit): a group larger than this many tokens (rows ×
  padded length) runs as several `session.run`s of consecutive rows, so a window-mode
  batch (up to `max_batch_size × max_windows` window rows) never needs more memory than
  the largest batch of one-window texts.

Window mode (berth's pip configs, where this runner serves the classifier): the config
declares a third input, `windows` (INT64 [2] a row: the row's text within its request and
its weight, from the tokenizer), which is not a graph input. Each request's rows are then
windows: after the session ran, its window logits are aggregated into one row per text
by training's own code (`berth_core.encoding`; parameters `aggregation` and
`problem_type`), and `logits` and `probabilities`
are answered per text. The ensemble needs no separate aggregation step, so a text of one
window costs what it cost before windows. The native backend (default and GPU configs)
has no such input; there the ensemble aggregates in a step of its own.

Every `execute()` call gets the requests one dynamic batch gathered.

Without ragged inputs, requests whose inputs have equal non-batch shapes are concatenated
into one `session.run` and the outputs split back by row counts; requests with other
shapes run as their own group.

With ragged inputs (every request padded only to its own length by the tokenizer, so
the dynamic batcher merges requests of any length), the requests are sorted by their
sequence length (the last dimension) and cut into sub-batches, each right-padded with
zeros to its own longest request: the mask input must be among the ragged inputs, so a
padded position is masked. Where to cut is chosen exactly (dynamic programming over
the distinct lengths) for the cost model `run cost + rows × padded length` tokens, with
one `session.run` costing as much as `ragged_run_cost_tokens` tokens (default 16:
measured with one intra-op thread, a run's fixed cost is small, so sub-batches carry
almost no padding).

With `batch_input`s in the config (default configs exported with `--container-ragged`:
a flat `[-1]` graph input, the only ragged form the native backend takes), it does what
the native backend and Triton core do: every request in one `session.run`, ragged inputs
flattened and concatenated, the batch inputs computed from the requests' shapes
(`batch_input`, `run_flat`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

try:  # only inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # unit tests inject a stand-in
    pb_utils = None

# berth's runtime contract: installed in the source tree; under Triton, the copy
# serving.server puts next to this file in the backend directory.
from berth_core import encoding
from berth_core import names as contracts

TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


class WindowAggregation:
    """Window rows → text rows for one request's outputs (see the module docstring)."""

    def __init__(self, config: dict) -> None:
        self.method = contracts.parameter(config, "aggregation", "mean")
        if self.method not in encoding.AGGREGATIONS:
            raise ValueError(f"aggregation {self.method!r}: one of {encoding.AGGREGATIONS}")
        self.multi_label = contracts.parameter(config, "problem_type", "") == contracts.MULTI_LABEL

    def __call__(self, outputs: dict[str, np.ndarray], windows: np.ndarray) -> dict:
        logits, probs = encoding.aggregate_request(
            outputs[contracts.ONNX_LOGITS],
            windows,
            self.method,
            self.multi_label,
            outputs[contracts.ONNX_PROBABILITIES],
        )
        return {**outputs, contracts.ONNX_LOGITS: logits, contracts.ONNX_PROBABILITIES: probs}


def session_options(config: dict):
    import onnxruntime as ort

    options = ort.SessionOptions()
    intra = contracts.number_parameter(config, "intra_op_thread_count", "0")
    inter = contracts.number_parameter(config, "inter_op_thread_count", "0")
    if intra > 0:
        options.intra_op_num_threads = intra
    if inter > 0:
        options.inter_op_num_threads = inter
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spin-waiting worker threads burn cores that the server's other processes share.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def disabled_optimizers(config: dict, directory: Path | None = None) -> list[str]:
    """The config's `disabled_optimizers`, then those of `directory`'s session.json."""
    names = [
        name.strip()
        for name in (contracts.parameter(config, "disabled_optimizers", "") or "").split(",")
        if name.strip()
    ]
    session_file = directory / contracts.SESSION_FILE if directory is not None else None
    if session_file is not None and session_file.is_file():
        measured = json.loads(session_file.read_text()).get("disabled_optimizers", [])
        names += [name for name in measured if name not in names]
    return names


def model_file(args: dict, config: dict) -> Path:
    """`<model dir>/<version>/<default_model_filename or model.onnx>`."""
    name = config.get("default_model_filename") or contracts.MODEL_FILE
    base = Path(args["model_repository"])
    version = str(args.get("model_version", ""))
    candidate = base / version / name
    return candidate if candidate.is_file() else base / name


def group_by_shape(batches: list[dict[str, np.ndarray]]) -> list[list[int]]:
    """Indices of requests whose inputs share every non-batch shape, in arrival order."""
    groups: dict[tuple, list[int]] = {}
    for index, inputs in enumerate(batches):
        key = tuple(
            (name, array.shape[1:], array.dtype.str) for name, array in sorted(inputs.items())
        )
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def plan_ragged(widths: list[int], rows: list[int], run_cost_tokens: float) -> list[list[int]]:
    """Cut requests (sequence length `widths[i]`, `rows[i]` rows) into sub-batches.

    Sorted by width, each sub-batch is a contiguous run padded to its longest width;
    minimises `Σ run_cost_tokens + rows × padded width` exactly, by dynamic programming
    over the distinct widths (equal widths never gain from being split). Returns the
    request indices of each sub-batch, shortest first.
    """
    order = sorted(range(len(widths)), key=widths.__getitem__)
    levels: list[int] = []  # distinct widths, ascending
    level_rows: list[int] = []
    level_items: list[list[int]] = []
    for i in order:
        if levels and levels[-1] == widths[i]:
            level_rows[-1] += rows[i]
            level_items[-1].append(i)
        else:
            levels.append(widths[i])
            level_rows.append(rows[i])
            level_items.append([i])
    count = len(levels)
    best = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for stop in range(1, count + 1):
        width, group_rows = levels[stop - 1], 0
        for start in range(stop - 1, -1, -1):
            group_rows += level_rows[start]
            cost = best[start] + run_cost_tokens + group_rows * width
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    groups, stop = [], count
    while stop > 0:
        start = cut[stop]
        groups.append([i for level in level_items[start:stop] for i in level])
        stop = start
    return groups[::-1]


def pad_concat(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack [rows_i, width_i] arrays into [Σ rows, max width], right-padded with zeros."""
    if len(arrays) == 1:
        return arrays[0]
    width = max(a.shape[-1] for a in arrays)
    if all(a.shape[-1] == width for a in arrays):
        return np.concatenate(arrays, axis=0)
    out = np.zeros((sum(len(a) for a in arrays), width), dtype=arrays[0].dtype)
    start = 0
    for a in arrays:
        out[start : start + len(a), : a.shape[-1]] = a
        start += len(a)
    return out


def run_chunked(
    session, output_names: list[str], feed: dict[str, np.ndarray], max_run_tokens: int = 0
) -> list[np.ndarray]:
    """`session.run(feed)`, split into runs of at most `max_run_tokens` tokens (rows ×
    the feed's padded length, at least one row a run) when larger."""
    first = next(iter(feed.values()))
    rows, width = len(first), (first.shape[-1] if first.ndim > 1 else 1)
    step = max(1, max_run_tokens // max(width, 1)) if max_run_tokens > 0 else rows
    if rows <= step:
        return session.run(output_names, feed)
    parts = [
        session.run(output_names, {name: a[i : i + step] for name, a in feed.items()})
        for i in range(0, rows, step)
    ]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(output_names))]


def run_batched(
    session,
    batches: list[dict[str, np.ndarray]],
    output_names: list[str],
    ragged: frozenset[str] | set[str] = frozenset(),
    run_cost_tokens: float = 16.0,
    max_run_tokens: int = 0,
):
    """One `session.run` per shape group, or per planned sub-batch when inputs are
    ragged (see the module docstring); returns per-request {output: array}."""
    results: list[dict[str, np.ndarray] | None] = [None] * len(batches)
    if ragged and batches:
        names = list(batches[0])
        probe = next((n for n in names if n in ragged), None)
        if probe is not None and all(
            list(b) == names and all(b[n].ndim == 2 for n in ragged if n in b) for b in batches
        ):
            groups = plan_ragged(
                [b[probe].shape[-1] for b in batches],
                [len(b[probe]) for b in batches],
                run_cost_tokens,
            )
        else:
            groups = group_by_shape(batches)
    else:
        groups = group_by_shape(batches)
    for group in groups:
        feed = {
            name: pad_concat([batches[i][name] for i in group])
            if name in ragged
            else (
                np.concatenate([batches[i][name] for i in group], axis=0)
                if len(group) > 1
                else batches[group[0]][name]
            )
            for name in batches[group[0]]
        }
        outputs = run_chunked(session, output_names, feed, max_run_tokens)
        answers = split_by_request([batches[i] for i in group], output_names, outputs)
        for i, answer in zip(group, answers, strict=True):
            results[i] = answer
    return results


def split_by_request(
    batches: list[dict[str, np.ndarray]], output_names: list[str], outputs: list[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """The rows of one run's `outputs` back to the requests they came from, in order:
    each request's share is its batch size (its inputs' first dimension)."""
    answers, start = [], 0
    for inputs in batches:
        rows = len(next(iter(inputs.values())))
        answers.append(
            {
                name: out[start : start + rows]
                for name, out in zip(output_names, outputs, strict=True)
            }
        )
        start += rows
    return answers


def batch_input(spec: dict, shapes: list[tuple[int, ...]]) -> np.ndarray:
    """The value Triton gives a backend for batch input `spec`, for requests whose
    source input has `shapes` (batch dimension first): backend
    src/backend_input_collector.cc BatchInputShape and ProcessBatchInput."""
    kind = spec.get("kind", "BATCH_ELEMENT_COUNT")
    dtype = np.float32 if spec.get("data_type") == "TYPE_FP32" else np.int32
    counts = np.array([int(np.prod(shape)) for shape in shapes], dtype=np.int64)
    if kind == "BATCH_ELEMENT_COUNT":
        values = counts
    elif kind == "BATCH_ACCUMULATED_ELEMENT_COUNT":
        values = np.cumsum(counts)
    elif kind == "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO":
        values = np.concatenate([[0], np.cumsum(counts)])
    elif kind == "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE":
        values = np.zeros(int(counts.max()))  # only its shape carries the value
    elif kind in ("BATCH_ITEM_SHAPE", "BATCH_ITEM_SHAPE_FLATTEN"):
        items = [shape[1:] for shape in shapes for _ in range(shape[0])]
        values = np.array(items, dtype=np.int64).reshape(len(items), len(shapes[0]) - 1)
        values = values.reshape(-1) if kind == "BATCH_ITEM_SHAPE_FLATTEN" else values
    else:
        raise ValueError(f"unsupported batch input kind {kind!r}")
    return values.astype(dtype)


def run_flat(
    session,
    batches: list[dict[str, np.ndarray]],
    output_names: list[str],
    ragged: frozenset[str] | set[str],
    batch_inputs: list[dict],
) -> list[dict[str, np.ndarray]]:
    """The native backend's ragged batching: one `session.run` for every request, each
    ragged input's requests flattened and concatenated, the batch inputs computed as
    Triton computes them, the outputs split back by each request's batch size."""
    feed = {
        name: np.concatenate([b[name].reshape(-1) for b in batches])
        if name in ragged
        else np.concatenate([b[name] for b in batches], axis=0)
        for name in batches[0]
    }
    for spec in batch_inputs:
        value = batch_input(spec, [b[spec["source_input"][0]].shape for b in batches])
        feed.update(dict.fromkeys(spec["target_name"], value))
    return split_by_request(batches, output_names, session.run(output_names, feed))


def conformance_rules():
    """The native backend's load-time rules: the copy next to this file in a backend
    directory, else the source tree's (unit tests)."""
    try:
        import conformance
    except ImportError:
        from serving import conformance
    return conformance


def refuse_as_native(config: dict, session, path: Path, version_dir: Path) -> None:
    """Raise, as the native backend's load would fail, on what it refuses."""
    rules = conformance_rules()
    graph = rules.GraphIO.from_session(session)
    violations = rules.check_onnxruntime_model(config, graph)
    violations += rules.check_model_file(version_dir, config)
    if violations:
        raise ValueError(
            f"{path}: the native onnxruntime backend refuses this configuration "
            f"(berth's runner is strict, {contracts.STRICT_RUNNER_ENV}=1):\n"
            + rules.refusal(violations)
        )


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        self.config = json.loads(args["model_config"])
        self.inputs = [
            (spec["name"], TRITON_TO_NUMPY.get(spec["data_type"]))
            for spec in self.config["input"]
            if spec["name"] != contracts.WINDOWS
        ]
        self.windows = None
        if any(spec["name"] == contracts.WINDOWS for spec in self.config["input"]):
            self.windows = WindowAggregation(self.config)
        self.outputs = [
            (spec["name"], TRITON_TO_NUMPY[spec["data_type"]]) for spec in self.config["output"]
        ]
        path = model_file(args, self.config)
        self.session = ort.InferenceSession(
            str(path),
            sess_options=session_options(self.config),
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled_optimizers(self.config, path.parent),
        )
        if os.environ.get(contracts.STRICT_RUNNER_ENV) == "1":
            version_dir = Path(args["model_repository"]) / str(args.get("model_version", ""))
            refuse_as_native(self.config, self.session, path, version_dir)
        graph_inputs = {i.name for i in self.session.get_inputs()}
        missing = [name for name, _ in self.inputs if name not in graph_inputs]
        if missing:
            raise ValueError(f"{path}: the config declares inputs {missing} the graph lacks")
        self.output_names = [name for name, _ in self.outputs]
        self.ragged = frozenset(
            spec["name"] for spec in self.config["input"] if spec.get("allow_ragged_batch")
        )
        self.run_cost_tokens = contracts.number_parameter(
            self.config, "ragged_run_cost_tokens", "16", float
        )
        self.max_run_tokens = contracts.number_parameter(self.config, "max_run_tokens", "0")
        self.batch_inputs = list(self.config.get("batch_input") or [])

    def read_inputs(self, request) -> dict[str, np.ndarray]:
        feed = {}
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                continue
            array = tensor.as_numpy()
            feed[name] = array.astype(dtype, copy=False) if dtype is not None else array
        return feed

    def _read(self, requests) -> tuple[list, dict[int, str], dict[int, np.ndarray]]:
        """Per request: its graph inputs (None when malformed), errors, `windows`."""
        batches, errors, windows = [], {}, {}
        for index, request in enumerate(requests):
            try:
                feed = self.read_inputs(request)
                if self.windows is not None:
                    windows[index] = pb_utils.get_input_tensor_by_name(
                        request, contracts.WINDOWS
                    ).as_numpy()
                batches.append(feed)
            except Exception as exc:  # a malformed request fails alone
                errors[index] = str(exc)
                batches.append(None)
        return batches, errors, windows

    def _response(self, outputs: dict[str, np.ndarray]):
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(outputs[name].astype(dtype, copy=False)))
                for name, dtype in self.outputs
            ]
        )

    def _run(self, batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if self.batch_inputs and batches:  # the native backend's ragged form
            return run_flat(
                self.session, batches, self.output_names, self.ragged, self.batch_inputs
            )
        return run_batched(
            self.session,
            batches,
            self.output_names,
            self.ragged,
            self.run_cost_tokens,
            self.max_run_tokens,
        )

    def execute(self, requests):
        batches, errors, windows = self._read(requests)
        valid = [i for i, b in enumerate(batches) if b is not None]
        try:
            results = self._run([batches[i] for i in valid])
            by_index = dict(zip(valid, results, strict=True))
        except Exception as exc:
            by_index = {}
            for i in valid:
                errors[i] = f"onnxruntime: {exc}"
        responses = []
        for index in range(len(requests)):
            if index not in errors and self.windows is not None:
                try:
                    by_index[index] = self.windows(by_index[index], windows[index])
                except Exception as exc:  # a malformed request fails alone
                    errors[index] = f"windows: {exc}"
            if index in errors:
                error = pb_utils.TritonError(errors[index])
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            else:
                responses.append(self._response(by_index[index]))
        return responses

    def finalize(self) -> None:
        self.session = None
