"""Quantization-aware training: the artifact's weight quantization in the student's forward pass while it distils.

    from eibert.qat import QatSettings, start_qat, step_groups, float_state, load_trained
    qs = QatSettings.from_json(distill.qat)       # the artifact's QuantSettings and whether its head is folded
    start_qat(student, qs)                         # in place: fold the head, swap in trainable fake-quantized layers
    opt = adamw([student], ..., groups=step_groups(student, qs), post=clamp_steps(student))
    ...                                            # train as usual: the weights and the LSQ step sizes both learn
    float_state(student), step_state(student)      # what the student stage saves (student.pt, qat.pt)
    qmodel = load_trained(model, steps, quant)     # the artifact stage (model: the saved spec and student.pt)

The weights train through the straight-through estimator (LSQ, Esser et al.): rounding and clamping are in the
forward pass, gradients pass them unchanged inside the range. Step sizes learn with AdamW at a rate relative to
their own magnitude (`quant.lr`, as in the post-training LSQ of eibert.quant), without decay, and are kept
positive after every update. The integrated head's bridge is folded into its pooler before QAT when the artifact
will fold it (the folded matrix is the one that gets quantized, so it must be the one that trains).
"""

from dataclasses import dataclass

import torch
from torch import nn

from eibert.quant import QuantSettings, quantize, step_sizes
from eibert.student import fold_into

STEP_SUFFIXES = ("step", "act_step")


@dataclass(frozen=True)
class QatSettings:
    quant: QuantSettings
    fold: bool = False

    @classmethod
    def from_json(cls, d: dict) -> "QatSettings":
        return cls(QuantSettings(**d["quant"]), bool(d.get("fold", False)))

    def to_json(self) -> dict:
        return {"quant": self.quant.to_json(), "fold": self.fold}


def is_quantized(student: nn.Module) -> bool:
    return bool(step_sizes(student))


def start_qat(student: nn.Module, qs: QatSettings) -> nn.Module:
    """Fold the head (if the artifact will) and swap every Linear and Embedding for its trainable fake-quantized
    twin, in place; a student already quantized is left as it is."""
    if is_quantized(student):
        return student
    if qs.fold:
        fold_into(student)
    return quantize(student, qs.quant, trainable=True)


def step_groups(student: nn.Module, qs: QatSettings) -> list[dict]:
    """AdamW parameter groups for the step sizes: each at `quant.lr` times its own mean magnitude, no decay."""
    return [{"params": [p], "lr": qs.quant.lr * float(p.detach().abs().mean()), "weight_decay": 0.0}
            for p in step_sizes(student)]


def clamp_steps(student: nn.Module):
    """After each update: step sizes stay positive (a negative step would flip the weights' signs)."""
    params = step_sizes(student)

    def post() -> None:
        with torch.no_grad():
            for p in params:
                p.clamp_(min=1e-8)

    return post


def _is_step(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in STEP_SUFFIXES


def float_state(student: nn.Module) -> dict:
    """The latent float weights under the plain student's names (QuantLinear keeps `weight` and `bias`)."""
    return {k: v for k, v in student.state_dict().items() if not _is_step(k)}


def step_state(student: nn.Module) -> dict:
    return {k: v for k, v in student.state_dict().items() if _is_step(k)}


def load_trained(model: nn.Module, steps: dict, quant: QuantSettings) -> nn.Module:
    """`model` (the saved spec with the trained latent weights) quantized with `quant`, with the trained steps."""
    qmodel = quantize(model, quant)
    mine = step_state(qmodel)
    try:
        if set(steps) != set(mine):
            raise RuntimeError(f"step sizes {sorted(set(steps) ^ set(mine))[:3]} on one side only")
        qmodel.load_state_dict({**qmodel.state_dict(), **steps})
    except RuntimeError as e:  # missing or unexpected step sizes, or step shapes of another granularity
        raise ValueError(f"the QAT student does not fit quant settings {quant.to_json()}: {str(e).splitlines()[0]}") from None
    return qmodel
