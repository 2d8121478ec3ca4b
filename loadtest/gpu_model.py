"""`python -m loadtest.gpu_model`: what the classifier's forward pass costs on a GPU.

The GPU configuration (`configs/gpu.pbtxt`, fp16 through TensorRT) needs the NVIDIA
container. Wherever PyTorch sees a CUDA device, this measures the same checkpoint in fp16
and fp32 by padded sequence length and batch size, eager and replayed as a CUDA graph
(one launch per batch, as an engine runs it), and checks on held-out texts that fp16
decides as fp32 does. It is the GPU path's model-only ceiling: what Triton's GPU
instances can approach, not a served figure. `--device cpu` runs the same code (tests).

    python -m loadtest.gpu_model --checkpoint runs/sentiment/model --seq 128 256
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from berth_args import ConfigParser, option
from loadtest.data import read_texts_file
from training.predict import Predictor

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Row:
    seq: int
    batch: int
    precision: str
    eager_ms: float
    graph_ms: float | None

    @property
    def texts_per_s(self) -> float:
        best = min(t for t in (self.eager_ms, self.graph_ms) if t is not None)
        return self.batch / best * 1000.0


def median_ms(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Median wall time of `fn` in ms after 3 warm-up calls, synchronised per call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def cuda_graph(model, ids: torch.Tensor, mask: torch.Tensor) -> Callable[[], None]:
    """The forward pass captured once and replayed: no per-kernel launch cost."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            model(input_ids=ids, attention_mask=mask)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(input_ids=ids, attention_mask=mask)
    return graph.replay


@torch.inference_mode()
def sweep(
    checkpoint: Path,
    device: torch.device,
    precisions: Sequence[str],
    seqs: Sequence[int],
    batches: Sequence[int],
    iters: int,
    graphs: bool,
) -> list[Row]:
    rows = []
    for precision in precisions:
        model = Predictor(checkpoint, str(device)).model.to(DTYPES[precision])
        vocab = model.config.vocab_size
        for seq in seqs:
            for batch in batches:
                ids = torch.randint(1000, vocab, (batch, seq), device=device)
                mask = torch.ones_like(ids)
                forward = functools.partial(model, input_ids=ids, attention_mask=mask)
                eager = median_ms(forward, device, iters)
                graph = None
                if graphs and device.type == "cuda":
                    graph = median_ms(cuda_graph(model, ids, mask), device, iters)
                rows.append(Row(seq, batch, precision, eager, graph))
                print(format_row(rows[-1]), flush=True)
    return rows


def agreement(checkpoint: Path, texts: list[str], device: torch.device) -> dict:
    """fp16 against fp32 on the same texts: decisions and probabilities."""
    reference = Predictor(checkpoint, str(device))
    half = Predictor(checkpoint, str(device))
    half.model.half()
    p32 = reference.probabilities(texts, batch_size=256)
    p16 = half.probabilities(texts, batch_size=256)
    return {
        "texts": len(texts),
        "argmax_agreement": float((p32.argmax(1) == p16.argmax(1)).mean()),
        "max_abs_dprob": float(np.abs(p32 - p16).max()) if len(texts) else 0.0,
    }


def format_row(row: Row) -> str:
    graph = f"{row.graph_ms:.2f}" if row.graph_ms is not None else "–"
    return (
        f"| {row.seq} | {row.batch} | {row.precision} | {row.eager_ms:.2f} | {graph} "
        f"| {row.texts_per_s:,.0f} |"
    )


@dataclass
class GpuModelConfig:
    checkpoint: Path = option(help="runs/<run>/model")
    device: str = option("cuda", "cuda, cuda:1, … or cpu")
    precisions: list[Literal["fp16", "fp32"]] = field(default_factory=lambda: ["fp16", "fp32"])
    seq: list[int] = option(factory=lambda: [128, 256], help="padded tokens")
    batch: list[int] = field(default_factory=lambda: list(DEFAULT_BATCHES))
    iters: int = option(20, "timed calls per point")
    graphs: bool = option(True, "eager only", flag="--no-graphs")
    texts: Path | None = option(
        None,
        "texts for the fp16/fp32 check: .jsonl, .csv or .txt "
        "(default: the run's splits/test.jsonl)",
    )
    output: Path | None = option(None, "write the results as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    parser = ConfigParser(
        GpuModelConfig, prog="python -m loadtest.gpu_model", description=__doc__.split("\n\n")[0]
    )
    cfg = parser.parse_config(argv)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device visible to PyTorch; pass --device cpu to run on the CPU")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{cfg.checkpoint} on {name}, torch {torch.__version__}\n")
    print("| tokens | batch | precision | eager ms | CUDA graph ms | texts/s |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    rows = sweep(cfg.checkpoint, device, cfg.precisions, cfg.seq, cfg.batch, cfg.iters, cfg.graphs)
    texts_file = cfg.texts or cfg.checkpoint.parent / "splits" / "test.jsonl"
    check = agreement(cfg.checkpoint, read_texts_file(texts_file), device)
    print(
        f"\nfp16 vs fp32 on {check['texts']} texts of {texts_file}: argmax agreement "
        f"{check['argmax_agreement']:.2%}, max |Δp| {check['max_abs_dprob']:.2e}"
    )
    if cfg.output:
        write_results(cfg.output, name, rows, check)
    return 0


def write_results(output: Path, device_name: str, rows: list[Row], check: dict) -> None:
    result = {
        "device": device_name,
        "torch": torch.__version__,
        "rows": [asdict(r) | {"texts_per_s": r.texts_per_s} for r in rows],
        "fp16_vs_fp32": check,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
