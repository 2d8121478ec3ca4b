"""The export's gates: each variant's verdict on what scoring measured, by the gate its
declaration names (export/variants.py), and whether the export as a whole is refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from export.errors import ExportRefused
from export.variants import REFERENCE, Gate, variant

if TYPE_CHECKING:
    from export.config import ExportConfig
    from export.score import VariantScore

OK = "ok"


@dataclass(frozen=True)
class Verdict:
    """One variant's gate outcome."""

    variant: str
    drop: float  # points of the primary metric lost against the reference
    verdict: str  # as the report says it: "ok", "refused: parity", "refused: accuracy"
    refusal: str | None = None  # why it was refused, in words
    fatal: bool = False  # refuses the whole export

    @property
    def passed(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True)
class GateOutcome:
    """Every variant's verdict, in scoring order."""

    verdicts: tuple[Verdict, ...]

    @property
    def fatal(self) -> bool:
        return any(v.fatal for v in self.verdicts)

    @property
    def refusals(self) -> list[str]:
        """The reference's refusal first: nothing else can be judged against it."""
        ordered = sorted(self.verdicts, key=lambda v: v.variant != REFERENCE)
        return [v.refusal for v in ordered if v.refusal is not None]

    @property
    def passed(self) -> list[str]:
        return [v.variant for v in self.verdicts if v.passed]

    def of(self, name: str) -> Verdict:
        return next(v for v in self.verdicts if v.variant == name)

    def raise_if_fatal(self) -> None:
        if self.fatal:
            raise ExportRefused(
                "export refused, nothing published (repository unchanged):\n  "
                + "\n  ".join(self.refusals)
            )


def apply_gates(cfg: ExportConfig, scores: Sequence[VariantScore]) -> GateOutcome:
    """Judge each variant by its gate against the reference's scores."""
    reference = next(s for s in scores if s.variant == REFERENCE)
    return GateOutcome(tuple(judge(cfg, s, reference) for s in scores))


def judge(cfg: ExportConfig, score: VariantScore, reference: VariantScore) -> Verdict:
    drop = reference.scores.primary - score.scores.primary
    if variant(score.variant).gate is Gate.PARITY:
        return _parity_gate(cfg, score, drop)
    return _accuracy_gate(cfg, score, reference, drop)


def _parity_gate(cfg: ExportConfig, score: VariantScore, drop: float) -> Verdict:
    """max |Δlogit| <= --parity-tolerance and every argmax the PyTorch reference's;
    failing it is always fatal."""
    p = score.parity
    if p.max_abs_logit_diff <= cfg.parity_tolerance and p.argmax_agreement == 1.0:
        return Verdict(score.variant, drop, OK)
    return Verdict(
        score.variant,
        drop,
        "refused: parity",
        f"{score.variant} parity failed: max |Δlogit| {p.max_abs_logit_diff:.3g} (limit "
        f"{cfg.parity_tolerance:g}), argmax agreement {100 * p.argmax_agreement:.2f} % "
        f"(must be 100 %) on {p.texts} held-out texts against the PyTorch reference",
        fatal=True,
    )


def _accuracy_gate(
    cfg: ExportConfig, score: VariantScore, reference: VariantScore, drop: float
) -> Verdict:
    """A loss of at most --max-accuracy-drop points; a refused variant is fatal unless
    --skip-refused and no ensemble serves it."""
    if drop > cfg.max_accuracy_drop:  # a loss of exactly the limit passes
        served = score.variant in (cfg.default_variant, cfg.gpu_variant)
        return Verdict(
            score.variant,
            drop,
            "refused: accuracy",
            f"{score.variant} refused: {score.scores.primary_metric} "
            f"{score.scores.primary:.2f} vs {reference.variant} {reference.scores.primary:.2f} "
            f"loses {drop:.2f} points, more than --max-accuracy-drop {cfg.max_accuracy_drop:g}",
            fatal=not cfg.skip_refused or served,
        )
    return Verdict(score.variant, drop, OK)
