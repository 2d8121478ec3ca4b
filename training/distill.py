"""Train big, serve small: `python -m training distill`.

A student learns to copy a trained teacher: soft targets at a temperature (softmax for
single-label, sigmoid for multi-label) plus the hard labels, on the teacher's own
training split and on unlabelled text that only the teacher labels. The student starts
from a subset of the teacher's layers (which ones: tried briefly, chosen on validation)
or from any smaller checkpoint with the same vocabulary. Its output is an ordinary berth
checkpoint whose `berth.json` names the teacher and the settings, so export, serving and
the client take it unchanged.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from berth_args import groups, option
from berth_core.checkpoint import BerthConfig
from berth_core.encoding import Windows, aggregate, encode_windows
from berth_core.errors import CheckpointError
from training.data import DataError, DataSpec, source_texts
from training.metrics import agreement
from training.predict import Predictor, first_token_states, model_window_outputs
from training.sentences import sentences_of
from training.sources import SourceTexts, corpus_listing
from training.sources import resolve as resolve_source
from training.train import (
    METRICS,
    EncodedDataset,
    PadCollator,
    Session,
    TrainConfig,
    TrainResult,
    _logits,
    _trainer_class,
    build_trainer,
    check_positions,
    evaluate,
    finish,
    fit,
    optimisation_arguments,
    run_metrics,
    sampling_strategy,
    start,
)

# Data fields a student inherits from its teacher's run unless given: the same split
# (its labels come from the teacher's berth.json; seeds and code trust stay the user's).
INHERITED_DATA = tuple(
    f.name
    for f in fields(DataSpec)
    if f.name not in ("labels", "trust_remote_code", "seed", "split_seed")
)

SOFT_LOSSES = ("kl", "mse")


@groups(
    {
        "dataset": "data",
        "max_length": "model",
        "group_by_length": "optimisation",
        "teacher": "distill",
    }
)
@dataclass
class DistillConfig(TrainConfig):
    """`python -m training` plus the teacher, the student and the distillation loss."""

    dataset: str | None = option(
        None,
        "labelled data as for `python -m training` (default: the teacher run's own data "
        "and split, read from its metrics.json)",
    )
    max_length: int | None = option(None, "maximum tokens per text (default: the teacher's)")
    extra_metrics: ClassVar[tuple[str, ...]] = ("teacher_agreement", "unlabelled_agreement")
    metric: str | None = option(
        None,
        "validation metric for early stopping and the best checkpoint (default: accuracy; "
        "micro_f1 for multi-label; teacher_agreement: the share of validation texts decided "
        "as the teacher decides them; unlabelled_agreement: the same on the "
        "--held-out-unlabelled texts)",
        choices=(*METRICS, *extra_metrics),
    )
    group_by_length: bool = option(
        True,
        "batch rows of similar length together: unlabelled windows are long, snippets "
        "short, and mixed batches would pad every snippet to the window length",
    )
    teacher: str = option("", "the teacher: a berth checkpoint directory (runs/<run>/model)")
    student: str | None = option(
        None,
        "start the student from this checkpoint (a Hub id or directory; same vocabulary "
        "as the teacher) instead of the teacher's own layers",
    )
    student_layers: int = option(3, "encoder layers the student keeps from the teacher")
    student_ffn_size: int | None = option(
        None,
        "feed-forward units the student keeps per layer, those with the largest weights "
        "(default: all; fewer make a narrower, faster student)",
    )
    keep_layers: list[int] | None = option(
        None,
        "exactly which teacher layers to keep (0-based); default: try a few spreads for "
        "--selection-steps each and keep the one closest to the teacher on validation",
    )
    selection_steps: int = option(60, "training steps per candidate layer set when choosing layers")
    temperature: float = option(2.0, "softmax/sigmoid temperature of the soft targets")
    alpha: float = option(0.7, "weight of the soft-target loss; 1 - alpha goes to the hard labels")
    soft_loss: str = option(
        "kl",
        "how the student copies the teacher's outputs: kl (soft targets at --temperature) "
        "or mse (squared distance between the logits themselves, which a text's window "
        "logits are averaged over; --temperature does not apply)",
        choices=SOFT_LOSSES,
    )
    hidden_weight: float = option(
        0.0,
        "weight of the intermediate-layer loss: after each student layer its normalised "
        "first-token state copies the teacher's after the layer it stands for (Patient "
        "KD); needs the teacher's hidden size; 0 turns it off",
    )
    unlabelled_corpus: list[str] | None = option(
        None,
        "corpora whose texts (labels dropped) the teacher labels for the student: "
        f"{corpus_listing()}",
    )
    unlabelled_windows: int = option(
        2,
        "windows of --max-length tokens taken from a long unlabelled text (spread over "
        "it, first and last included)",
    )
    unlabelled_sentences: int = option(
        0,
        "each unlabelled text also gives up to this many of its sentences (at random), "
        "each labelled by the teacher as a text of its own: transfer text shaped like "
        "short served texts (snippets, queries) when the unlabelled text is long (0 = off)",
    )
    sentence_language: str = option(
        "en",
        "language of the unlabelled text, for cutting it into sentences (an ISO 639 code; "
        "one without its own rules gets generic ones)",
    )
    unlabelled_file: list[str] | None = option(
        None,
        'files of unlabelled text (.txt one per line; .jsonl one {"text": ...} per line, '
        "as `python -m serving --sample-texts` and berth-client sample served texts; or "
        "any data file with --text-column) that the teacher labels for the student",
    )
    offline_unlabelled: bool = option(
        True,
        "add the unlabelled text that ships with an offline corpus (rotten_tomatoes: its "
        "plot summaries); --no-offline-unlabelled turns it off",
    )
    max_unlabelled: int | None = option(
        None, "use at most this many unlabelled texts (seeded sample)"
    )
    held_out_unlabelled: int = option(
        0,
        "keep this many more unlabelled texts out of training: every evaluation records "
        "the student's agreement with the teacher on them, whole texts read as served "
        "(unlabelled_agreement; --metric unlabelled_agreement keeps the epoch that agrees "
        "most on text like the unlabelled corpus rather than on the labelled validation)",
    )

    def validate(self) -> None:
        if self.model:
            raise DataError("--model does not apply here: the student comes from --student")
        if self.window_loss != "windows":
            raise DataError(
                "--window-loss text does not apply to distillation: the student learns the "
                "teacher's logits window by window"
            )
        if self.temperature <= 0:
            raise DataError(f"--temperature {self.temperature}: use a value above 0")
        if not 0 <= self.alpha <= 1:
            raise DataError(f"--alpha {self.alpha}: use a value in [0, 1]")
        if self.hidden_weight < 0:
            raise DataError(f"--hidden-weight {self.hidden_weight}: use a value of 0 or more")
        self._validate_unlabelled()
        if self.student_layers < 1:
            raise DataError(f"--student-layers {self.student_layers}: use at least 1")
        if self.student_ffn_size is not None and self.student_ffn_size < 1:
            raise DataError(f"--student-ffn-size {self.student_ffn_size}: use at least 1")
        super().validate()

    def _validate_unlabelled(self) -> None:
        if self.unlabelled_windows < 1:
            raise DataError(f"--unlabelled-windows {self.unlabelled_windows}: use at least 1")
        if self.unlabelled_sentences < 0:
            raise DataError(f"--unlabelled-sentences {self.unlabelled_sentences}: use 0 or more")
        if self.held_out_unlabelled < 0:
            raise DataError(f"--held-out-unlabelled {self.held_out_unlabelled}: use 0 or more")
        if self.metric == "unlabelled_agreement" and not self.held_out_unlabelled:
            raise DataError(
                "--metric unlabelled_agreement needs texts to measure it on: pass "
                "--held-out-unlabelled N"
            )


# --------------------------------------------------------------------------- config


def teacher_run_config(teacher: Path) -> dict:
    """The `config` the teacher's run recorded (empty when it is not a berth run)."""
    path = teacher.parent / "metrics.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get("config", {})


def resolve(config: DistillConfig, teacher: BerthConfig) -> DistillConfig:
    """Fill what the user left open from the teacher: its data and split (when no data
    was named), its input length and truncation, and its label order."""
    resolved = copy.copy(config)
    if not (config.dataset or config.train_file):
        recorded = teacher_run_config(Path(config.teacher))
        if not recorded:
            raise DataError(
                f"{config.teacher}: no metrics.json beside it to take the data from; pass "
                "--dataset or --train-file"
            )
        for name in INHERITED_DATA:
            setattr(resolved, name, recorded.get(name))
        if config.split_seed is None:
            recorded_split = recorded.get("split_seed")
            resolved.split_seed = (
                recorded.get("seed", 42) if recorded_split is None else recorded_split
            )
    if config.max_length is None:
        resolved.max_length = teacher.max_length
        resolved.truncation, resolved.head_tokens = teacher.truncation, teacher.head_tokens
    # read long texts as the teacher does (its windows), unless told otherwise
    if getattr(config, "max_windows", None) is None:
        resolved.max_windows = teacher.max_windows
        resolved.window_stride = teacher.window_stride or None
    resolved.labels = list(teacher.labels)
    resolved.problem_type = "multi_label" if teacher.multi_label else "single_label"
    return resolved


# --------------------------------------------------------------------------- student


def encoder_layers(model) -> torch.nn.ModuleList:
    """The ModuleList of transformer blocks (BERT, RoBERTa, DistilBERT, … all keep one)."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise DataError(f"{type(model).__name__}: cannot find its {count} encoder layers")


def keep_layers(teacher_model, keep: list[int]):
    """A copy of the teacher with only the layers in `keep` (embeddings, pooler and head
    included), its config saying so."""
    total = teacher_model.config.num_hidden_layers
    if not keep or sorted(set(keep)) != list(keep) or keep[0] < 0 or keep[-1] >= total:
        raise DataError(
            f"--keep-layers {keep}: give increasing, distinct layer indices in 0..{total - 1}"
        )
    student = copy.deepcopy(teacher_model)
    layers = encoder_layers(student)
    kept = [layers[i] for i in keep]
    layers._modules.clear()
    for i, layer in enumerate(kept):
        layers.add_module(str(i), layer)
    student.config.num_hidden_layers = len(keep)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    return student


def narrow_feed_forward(model, size: int):
    """Keep `size` feed-forward units in every layer (BERT-style `intermediate.dense`
    and `output.dense`): those whose input and output weights have the largest norms
    (their product), in their original order. The two thirds of a BERT layer's
    multiply-adds that sit in the feed-forward shrink with it; distillation then
    recovers what the dropped units carried."""
    from transformers.pytorch_utils import prune_linear_layer

    current = model.config.intermediate_size
    if size >= current:
        raise DataError(f"--student-ffn-size {size}: the model has only {current} units")
    for layer in encoder_layers(model):
        inner = getattr(getattr(layer, "intermediate", None), "dense", None)
        outer = getattr(getattr(layer, "output", None), "dense", None)
        if not (isinstance(inner, torch.nn.Linear) and isinstance(outer, torch.nn.Linear)):
            raise DataError(
                f"--student-ffn-size: {type(model).__name__} has no BERT-style feed-forward "
                "(intermediate.dense, output.dense) to narrow"
            )
        weight = inner.weight.detach().norm(dim=1) * outer.weight.detach().norm(dim=0)
        keep = weight.topk(size).indices.sort().values
        layer.intermediate.dense = prune_linear_layer(inner, keep, dim=0)
        layer.output.dense = prune_linear_layer(outer, keep, dim=1)
    model.config.intermediate_size = size
    return model


def layer_candidates(total: int, count: int) -> list[list[int]]:
    """Layer sets worth trying: every k-th from the bottom, every k-th ending at the top,
    spread evenly from first to last, the bottom block."""
    if count >= total:
        raise DataError(f"--student-layers {count}: the teacher has only {total} layers")
    step = total / count
    sets = [
        [int(i * step) for i in range(count)],
        [math.ceil((i + 1) * step) - 1 for i in range(count)],
        sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)}),
        list(range(count)),
    ]
    unique = []
    for candidate in sets:
        if len(candidate) == count and candidate not in unique:
            unique.append(candidate)
    return unique


def check_vocabulary(student_tokenizer, teacher_dir: Path) -> None:
    from transformers import AutoTokenizer

    teacher_vocab = AutoTokenizer.from_pretrained(str(teacher_dir)).get_vocab()
    student_vocab = student_tokenizer.get_vocab()
    if student_vocab != teacher_vocab:
        differ = len(set(student_vocab.items()) ^ set(teacher_vocab.items()))
        raise DataError(
            f"--student: its vocabulary ({len(student_vocab)} tokens) differs from the "
            f"teacher's ({len(teacher_vocab)} tokens, {differ} entries differ); pick a "
            "student with the teacher's tokenizer, or drop --student to keep teacher layers"
        )


def check_student_labels(student: str, teacher: BerthConfig) -> None:
    path = Path(student) / "berth.json"
    if path.is_file():
        labels = BerthConfig.load(student).labels
        if labels != teacher.labels:
            raise DataError(
                f"--student {student}: its labels {labels} are not the teacher's "
                f"{teacher.labels}; a student must predict the teacher's labels in order"
            )


# --------------------------------------------------------------------------- data


def unlabelled_texts(config: DistillConfig, dataset_name: str | None) -> list[SourceTexts]:
    """The texts the teacher labels for the student, each source resolved as every reader
    resolves it: what ships with the labelled corpus (unless --no-offline-unlabelled),
    then --unlabelled-corpus names, then --unlabelled-file paths (a file without
    --text-column gives its first column)."""
    sources = []
    if config.offline_unlabelled and dataset_name and not config.train_file:
        sources += resolve_source(dataset_name).unlabelled()
    named = [(name, "corpus", "--unlabelled-corpus") for name in config.unlabelled_corpus or []]
    named += [(path, "file", "--unlabelled-file") for path in config.unlabelled_file or []]
    for name, kind, flag in named:
        source = resolve_source(name, (kind,), flag)
        sources.append(source_texts(source, config.text_column, any_column=True))
    return sources


def pick_unlabelled(
    sources: list[SourceTexts], exclude: set[str], limit: int | None, seed: int
) -> list[str]:
    """Unique unlabelled texts, none of them a labelled text (no validation or test text
    may leak into training as a teacher-labelled copy)."""
    seen = set(exclude)
    texts = []
    for _, candidates in sources:
        for text in candidates:
            text = text.strip()
            if text and text not in seen:
                seen.add(text)
                texts.append(text)
    if limit is not None and len(texts) > limit:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), limit, replace=False))]
    return texts


@dataclass
class DistillData:
    train: EncodedDataset
    validation: EncodedDataset
    test: EncodedDataset
    teacher_validation: np.ndarray
    teacher_test: np.ndarray
    unlabelled: int
    sentences: int
    unlabelled_rows: int


def with_teacher(
    dataset: EncodedDataset, predictor: Predictor, labelled: bool, cls_states: bool = False
) -> EncodedDataset:
    """The teacher's logits on exactly each row's tokens (and, for the intermediate-layer
    loss, its first-token states after every layer) ride along with the row."""
    logits, states = predictor.window_outputs(dataset.input_ids, cls_states=cls_states)
    dataset.extras["teacher_logits"] = logits.tolist()
    dataset.extras["has_label"] = [1.0 if labelled else 0.0] * len(dataset)
    if states is not None:
        dataset.extras["teacher_cls"] = list(states)
    return dataset


def unlabelled_rows(session: Session, predictor: Predictor, texts: list[str]) -> EncodedDataset:
    """Unlabelled texts as rows the student trains on: a long text contributes up to
    --unlabelled-windows windows spread over it, each labelled by the teacher on exactly
    those tokens."""
    config: DistillConfig = session.config
    windows = encode_windows(
        session.tokenizer, texts, config.max_length, 0, config.unlabelled_windows
    )
    placeholder = [0.0] * len(session.data.labels) if session.data.multi_label else 0
    dataset = EncodedDataset(windows.ids, [placeholder] * len(windows))
    return with_teacher(dataset, predictor, labelled=False, cls_states=config.hidden_weight > 0)


def concat(a: EncodedDataset, b: EncodedDataset) -> EncodedDataset:
    extras = {key: a.extras[key] + b.extras[key] for key in a.extras}
    return EncodedDataset(a.input_ids + b.input_ids, a.labels + b.labels, extras)


def distill_datasets(
    session: Session, predictor: Predictor, unlabelled: list[str], sentences: list[str]
):
    """Every row carries the teacher's logits on exactly its tokens and a has_label flag;
    unlabelled rows (and the sentences cut from them) join the training set with
    placeholder labels the loss ignores."""
    data = session.data
    sets = {}
    for name in ("train", "validation", "test"):
        dataset = session.dataset(getattr(data, name))
        # only training rows carry states: evaluation scores the logits alone
        cls_states = name == "train" and session.config.hidden_weight > 0
        sets[name] = with_teacher(dataset, predictor, True, cls_states)
    extra = unlabelled_rows(session, predictor, unlabelled + sentences)
    return DistillData(
        concat(sets["train"], extra),
        sets["validation"],
        sets["test"],
        teacher_text_logits(predictor, sets["validation"], data.validation.texts),
        teacher_text_logits(predictor, sets["test"], data.test.texts),
        len(unlabelled),
        len(sentences),
        len(extra),
    )


def teacher_text_logits(predictor: Predictor, rows: EncodedDataset, texts: list[str]):
    """The teacher's logits per text, as it serves them. When the rows are exactly the
    teacher's own windows of these texts, their logits (computed in the same batches)
    are aggregated rather than computed a second time."""
    windows = predictor.windows(texts)
    if windows.ids != rows.input_ids:
        return predictor.logits(texts)
    c = predictor.config
    logits = np.asarray(rows.extras["teacher_logits"], dtype=np.float32)
    return aggregate(logits, windows.text, windows.weight, c.aggregation, c.multi_label)


@dataclass
class HeldOut:
    """Unlabelled texts the student never trains on, decided by the teacher as served
    (whole texts, windows aggregated): the checkpoint can be chosen on text of the kind
    the student must copy, where the labelled validation split may be short snippets."""

    texts: list[str]
    windows: Windows | None  # the student's, encoded once: every evaluation reads them
    teacher_logits: np.ndarray
    pad_id: int

    def agreement(self, model, berth: BerthConfig, teacher: BerthConfig) -> float:
        windows = self.windows
        was_training = model.training
        model.eval()
        try:
            rows, _ = model_window_outputs(model, windows.ids, self.pad_id)
        finally:
            model.train(was_training)
        logits = aggregate(rows, windows.text, windows.weight, berth.aggregation, berth.multi_label)
        return agreement(logits, self.teacher_logits, berth, teacher)

    def scores(self, model, berth: BerthConfig, teacher: BerthConfig) -> dict:
        """`unlabelled_agreement` for each evaluation's metrics (none without texts)."""
        if not self.texts:
            return {}
        return {"unlabelled_agreement": self.agreement(model, berth, teacher)}

    def final(self, model, berth: BerthConfig, teacher: BerthConfig, state) -> dict:
        """The kept checkpoint's figure and the texts' count, for metrics.json: read from
        the kept epoch's evaluation in `state` (a TrainerState) where it was logged, the
        same weights and the same batches, else computed."""
        if not self.texts:
            return {}
        kept = kept_epoch_metric(state, "eval_unlabelled_agreement")
        return {
            "unlabelled": self.agreement(model, berth, teacher) if kept is None else kept,
            "unlabelled_texts": len(self.texts),
        }


def kept_epoch_metric(state, key: str) -> float | None:
    """`key` as logged by the evaluation of the checkpoint the trainer kept, if any."""
    step = state.best_global_step
    if step is None:
        return None
    logged = [e[key] for e in state.log_history if e.get("step") == step and key in e]
    return float(logged[-1]) if logged else None


def hold_out(session: Session, predictor: Predictor, sources, exclude: set[str]) -> HeldOut:
    """--held-out-unlabelled texts from the same sources, none trained on or labelled."""
    count = session.config.held_out_unlabelled
    texts = pick_unlabelled(sources, exclude, count, session.config.seed + 1) if count else []
    if count and not texts:
        raise DataError(
            "--held-out-unlabelled: every unlabelled text is already used for training; "
            "lower --max-unlabelled or add --unlabelled-file / --unlabelled-corpus"
        )
    if not texts:
        return HeldOut([], None, np.zeros((0, 0)), session.pad_id)
    session.say(f"teacher: deciding {len(texts)} held-out unlabelled texts")
    windows = session.contract().encode_windows(session.tokenizer, texts)
    return HeldOut(texts, windows, predictor.logits(texts), session.pad_id)


# --------------------------------------------------------------------------- loss


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    has_label: torch.Tensor,
    temperature: float,
    alpha: float,
    multi_label: bool,
    soft_loss: str = "kl",
) -> torch.Tensor:
    """alpha · soft-target loss + (1 − alpha) · hard-label loss (labelled rows only).

    Hard labels: cross-entropy (binary cross-entropy for multi-label). Soft targets, kl:
    T² · KL(softmax(t/T) ‖ softmax(s/T)), or binary cross-entropy against sigmoid(t/T)
    for multi-label; T² keeps the gradient scale independent of T (Hinton et al., 2015).
    mse: the logits' squared distance, centred per row for single-label since softmax
    ignores a shift (Kim et al., 2021)."""
    functional = torch.nn.functional
    if multi_label:
        hard_rows = functional.binary_cross_entropy_with_logits(
            student, labels.float(), reduction="none"
        ).mean(dim=1)
    else:
        hard_rows = functional.cross_entropy(student, labels.long(), reduction="none")
    hard = (hard_rows * has_label).sum() / has_label.sum().clamp(min=1.0)
    return (
        alpha * soft_target_loss(student, teacher, temperature, multi_label, soft_loss)
        + (1 - alpha) * hard
    )


def soft_target_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, multi: bool, kind: str
) -> torch.Tensor:
    functional = torch.nn.functional
    if kind == "mse":
        if not multi:
            student = student - student.mean(dim=-1, keepdim=True)
            teacher = teacher - teacher.mean(dim=-1, keepdim=True)
        return functional.mse_loss(student, teacher)
    t = temperature
    if multi:
        soft = functional.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t))
    else:
        soft = functional.kl_div(
            functional.log_softmax(student / t, dim=-1),
            functional.log_softmax(teacher / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
    return t * t * soft


def teacher_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layer each student layer stands for: spread evenly, last to last
    (3 of 6 → 1, 3, 5)."""
    return [(j + 1) * teacher_layers // student_layers - 1 for j in range(student_layers)]


def hidden_state_loss(student_states: tuple, teacher_cls: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the student's normalised first-token state after
    each layer and the teacher's after the layer it stands for (Sun et al., 2019).

    `student_states`: the model's `hidden_states` (embeddings first); `teacher_cls`:
    [batch, teacher layers, hidden]."""
    student = first_token_states(student_states)
    teacher = teacher_cls[:, teacher_layer_map(student.shape[1], teacher_cls.shape[1])]
    normalize = torch.nn.functional.normalize
    return (normalize(student, dim=-1) - normalize(teacher, dim=-1)).pow(2).sum(-1).mean()


def _distill_trainer_class(
    temperature: float,
    alpha: float,
    multi_label: bool,
    hidden_weight: float = 0.0,
    soft_loss: str = "kl",
):
    base = _trainer_class()

    class DistillTrainer(base):
        """berth's Trainer with the distillation loss; the teacher's logits (and, on
        training rows, its first-token states) come with each batch, computed once
        before training."""

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            teacher = inputs.pop("teacher_logits")
            has_label = inputs.pop("has_label")
            teacher_cls = inputs.pop("teacher_cls", None)
            outputs = model(**inputs, output_hidden_states=teacher_cls is not None)
            loss = distillation_loss(
                outputs.logits,
                teacher,
                labels,
                has_label,
                temperature,
                alpha,
                multi_label,
                soft_loss,
            )
            if teacher_cls is not None and hidden_weight > 0:
                loss = loss + hidden_weight * hidden_state_loss(outputs.hidden_states, teacher_cls)
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


# --------------------------------------------------------------------------- agreement


def kl_to_teacher(student_logits: np.ndarray, teacher_logits: np.ndarray, multi: bool) -> float:
    """Mean divergence of the student's output distribution from the teacher's."""
    s = torch.from_numpy(student_logits.astype(np.float64))
    t = torch.from_numpy(teacher_logits.astype(np.float64))
    if multi:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(s, torch.sigmoid(t)))
    log_p, log_q = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    return float((log_p.exp() * (log_p - log_q)).sum(-1).mean())


# --------------------------------------------------------------------------- distill


def choose_layers(session, teacher_model, data: DistillData, trainer_class, berth) -> dict:
    """Train each candidate layer set for a few steps; keep the one whose validation
    outputs are closest to the teacher's (KL), never looking at the test split."""
    from transformers import TrainingArguments

    config: DistillConfig = session.config
    total = teacher_model.config.num_hidden_layers
    # row by row (a long validation text is several windows in window mode)
    rows = np.asarray(data.validation.extras["teacher_logits"], dtype=np.float32)
    scores = {}
    for candidate in layer_candidates(total, config.student_layers):
        with tempfile.TemporaryDirectory() as workdir:
            # the full run's optimisation and batching (length-grouped batches pad
            # snippets far less: 2.5x faster steps than random ones beside windows)
            args = TrainingArguments(
                output_dir=workdir,
                **{
                    **optimisation_arguments(config, config.eval_batch_size),
                    "report_to": "none",
                    "disable_tqdm": True,
                },
                max_steps=config.selection_steps,
                save_strategy="no",
                eval_strategy="no",
                logging_strategy="no",
                seed=config.seed,
                train_sampling_strategy=sampling_strategy(config),
            )
            model = keep_layers(teacher_model, candidate)
            if config.student_ffn_size:  # try what will be trained
                narrow_feed_forward(model, config.student_ffn_size)
            trainer = trainer_class(
                model=model,
                args=args,
                train_dataset=data.train,
                data_collator=PadCollator(session.pad_id, berth.multi_label),
            )
            trainer.train()
            logits = _logits(trainer.predict(data.validation).predictions)
        key = ",".join(map(str, candidate))
        scores[key] = kl_to_teacher(logits, rows, berth.multi_label)
        session.say(f"layers {key}: validation KL to the teacher {scores[key]:.4f}")
    best = min(scores, key=scores.get)
    return {"kept": [int(i) for i in best.split(",")], "validation_kl": scores}


def load_student(config: DistillConfig, berth: BerthConfig):
    """--student: a smaller checkpoint with the teacher's labels and head shape."""
    from transformers import AutoModelForSequenceClassification

    student = AutoModelForSequenceClassification.from_pretrained(
        config.student,
        num_labels=len(berth.labels),
        id2label=berth.id2label,
        label2id={name: i for i, name in enumerate(berth.labels)},
        problem_type=berth.problem_type,
        use_safetensors=True,
        **({"trust_remote_code": True} if config.trust_remote_code else {}),
    )
    check_positions(student, config.max_length)
    return student


def check_hidden_size(config: DistillConfig, student, teacher_model) -> None:
    ours, theirs = student.config.hidden_size, teacher_model.config.hidden_size
    if config.hidden_weight > 0 and ours != theirs:
        raise DataError(
            f"--hidden-weight {config.hidden_weight}: the student's hidden size ({ours}) is "
            f"not the teacher's ({theirs}), so its layers cannot copy the teacher's states; "
            "use --hidden-weight 0"
        )


def build_student(session, teacher_model, data, trainer_class, berth) -> tuple[object, dict]:
    """The student model and how it was made (recorded in berth.json)."""
    config: DistillConfig = session.config
    if config.student:
        student, origin = load_student(config, berth), {"student": config.student}
        check_hidden_size(config, student, teacher_model)
    else:
        if config.keep_layers:
            choice = {"kept": list(config.keep_layers)}
        else:
            choice = choose_layers(session, teacher_model, data, trainer_class, berth)
        session.say(f"student keeps teacher layers {choice['kept']}")
        student, origin = keep_layers(teacher_model, choice["kept"]), {"layers": choice}
    if config.student_ffn_size:
        narrow_feed_forward(student, config.student_ffn_size)
        origin["ffn_size"] = config.student_ffn_size
    return student, origin


def distill(config: DistillConfig) -> TrainResult:
    """Distil `config.teacher` into a smaller student and write an ordinary berth run."""
    from transformers import AutoModelForSequenceClassification

    if not config.teacher:
        raise DataError("--teacher is required: a berth checkpoint (runs/<run>/model)")
    teacher_dir = Path(config.teacher)
    try:
        teacher = BerthConfig.load(teacher_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"--teacher: {exc}") from exc
    config = resolve(config, teacher)
    if config.student:
        check_student_labels(config.student, teacher)
    session = start(config, model_name=config.student or str(teacher_dir))
    if config.student:
        check_vocabulary(session.hf_tokenizer, teacher_dir)

    predictor = Predictor(teacher_dir, config=teacher)
    labelled = {t for s in (session.data.validation, session.data.test) for t in s.texts}
    labelled |= set(session.data.train.texts)
    sources = unlabelled_texts(config, config.dataset)
    unlabelled = pick_unlabelled(sources, labelled, config.max_unlabelled, config.seed)
    pieces = sentences_of(
        unlabelled, config.unlabelled_sentences, config.seed, config.sentence_language, labelled
    )
    session.say(
        f"teacher {teacher_dir}: labelling {len(unlabelled)} unlabelled texts too"
        + (f" and {len(pieces)} of their sentences" if pieces else "")
    )
    data = distill_datasets(session, predictor, unlabelled, pieces)
    held_out = hold_out(session, predictor, sources, labelled | set(unlabelled) | set(pieces))
    del predictor

    berth = session.contract()
    trainer_class = _distill_trainer_class(
        config.temperature, config.alpha, berth.multi_label, config.hidden_weight, config.soft_loss
    )
    teacher_model = AutoModelForSequenceClassification.from_pretrained(
        teacher_dir, use_safetensors=True
    )
    student, origin = build_student(session, teacher_model, data, trainer_class, berth)
    berth.distillation = distillation_record(config, teacher_dir, teacher_model, origin, data)
    del teacher_model

    trainer = build_trainer(
        session,
        student,
        data.train,
        data.validation,
        berth,
        trainer_class,
        # the student being scored is the trainer's model, bound when it exists
        extra_metrics=lambda logits: {
            "teacher_agreement": agreement(logits, data.teacher_validation, berth, teacher),
            **held_out.scores(trainer.model, berth, teacher),
        },
    )
    fitted = fit(session, trainer)
    result = evaluate(trainer, berth, data.validation, data.test)
    metrics = run_metrics(session, trainer, fitted, berth, result)
    metrics["teacher_agreement"] = agreement_metrics(berth, teacher, data, result)
    metrics["teacher_agreement"].update(
        held_out.final(trainer.model, berth, teacher, trainer.state)
    )
    metrics["distillation"] = berth.distillation
    session.say(
        f"agreement with the teacher: validation "
        f"{metrics['teacher_agreement']['validation']:.4f}, "
        f"test {metrics['teacher_agreement']['test']:.4f}"
    )
    return finish(session, trainer, berth, result, metrics)


def distillation_record(config, teacher_dir: Path, teacher_model, origin: dict, data) -> dict:
    own = {f.name for f in fields(TrainConfig)}
    settings = {k: v for k, v in asdict(config).items() if k not in own and k != "teacher"}
    return {
        "teacher": str(teacher_dir),
        "teacher_layers": teacher_model.config.num_hidden_layers,
        "unlabelled_texts": data.unlabelled,
        "unlabelled_sentences": data.sentences,
        "unlabelled_rows": data.unlabelled_rows,
        **origin,
        "settings": settings,
    }


def agreement_metrics(berth, teacher: BerthConfig, data: DistillData, result) -> dict:
    return {
        "validation": agreement(result.validation_logits, data.teacher_validation, berth, teacher),
        "test": agreement(result.test_logits, data.teacher_test, berth, teacher),
        "teacher_test": _teacher_scores(data.teacher_test, result.test_labels, teacher),
    }


def _teacher_scores(logits: np.ndarray, labels: np.ndarray, teacher: BerthConfig) -> dict:
    from training.metrics import classification_metrics

    return classification_metrics(logits, labels, teacher)
