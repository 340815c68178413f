"""Train the student: plain fine-tuning, standard (one-way) distillation, or cross-distillation.

    from eibert.distill import DistillSettings, train_student
    res = train_student(student, teacher, rows, DistillSettings(mode="cross"), ckpt_dir="ck/")
    res["steps"], res["teacher_lr"]

Cross-distillation ("put the teacher in the student's shoes"): teacher and student train together.
The student learns from the task labels, the teacher's temperature-softened logits (KL x T^2) and its
hidden states at mapped layers (MSE through a learned projection); the teacher keeps fine-tuning with
a small learning rate on the labels plus a KL term toward the student's predictions, so it adapts to
what the student can represent. Standard distillation is the same with a frozen teacher; fine-tuning
uses the labels alone. Checkpoints every `ckpt_every` steps let a long run resume where it stopped.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from eibert.qat import QatSettings, clamp_steps, start_qat, step_groups
from eibert.student import layer_map
from eibert.textcls import length_grouped, set_seed
from eibert.trainloop import TrainLoop, adamw


@dataclass(frozen=True)
class DistillSettings:
    mode: str = "cross"  # finetune | standard | cross
    epochs: float = 3.0
    batch_size: int = 32
    student_lr: float = 3e-4
    teacher_lr: float = 1e-5
    temperature: float = 4.0
    alpha_ce: float = 1.0
    alpha_kl: float = 1.0
    alpha_hidden: float = 1.0
    alpha_attn: float = 0.0
    teacher_kl: float = 0.5  # weight of the teacher's KL toward the student (cross mode)
    stage_gates: bool = False  # stage 1: intermediate layers only, until the gate opens
    gate_threshold: float = 0.05
    gate_patience: int = 3
    gate_every: int = 20
    warmup_ratio: float = 0.1
    max_steps: int | None = None
    seed: int = 0
    ckpt_every: int = 200
    weight_decay: float = 0.01  # AdamW's, for the student and (cross) the teacher; biases and LayerNorm exempt
    phases: tuple = ()  # eibert.phase_training.PhaseSettings in order; empty: one `mode` run of `epochs`
    qat: dict | None = None  # eibert.qat.QatSettings as JSON: the artifact's quantization in the forward pass

    def to_json(self) -> dict:
        d = asdict(self)
        d["phases"] = [p.to_json() for p in self.phases]
        if d["qat"] is None:  # students trained before QAT existed keep their keys
            del d["qat"]
        return d


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2 (Hinton et al.)."""
    return F.kl_div(F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits / T, -1), reduction="batchmean") * T * T


def attn_kl(student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL between head-averaged attention distributions (head counts may differ), real queries only."""
    s = student_probs.mean(1).clamp_min(1e-9)  # (B, T, T)
    t = teacher_probs.mean(1).clamp_min(1e-9)
    kl = (t * (t.log() - s.log())).sum(-1)  # (B, T)
    return (kl * mask).sum() / mask.sum()


class HiddenProjection(nn.Module):
    """Student hidden size -> teacher hidden size, for the hidden-state loss (training only)."""

    def __init__(self, student_hidden: int, teacher_hidden: int, dims: torch.Tensor | None = None):
        super().__init__()
        self.proj = nn.Linear(student_hidden, teacher_hidden)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.zero_()
            if dims is not None:  # start as the inverse of the hidden-dim selection
                self.proj.weight[dims, torch.arange(len(dims))] = 1.0
            else:
                nn.init.normal_(self.proj.weight, std=0.02)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)


def pair_rows(student_rows: list, teacher_rows: list, old_ids: list[int]) -> list:
    """Zip the two tokenisations of the same sentences; `aligned` when the student's ids map back to
    exactly the teacher's (same tokens, same positions)."""
    out = []
    for (s_ids, y), (t_ids, _) in zip(student_rows, teacher_rows):
        out.append((s_ids, t_ids, y, len(s_ids) == len(t_ids) and all(old_ids[a] == b for a, b in zip(s_ids, t_ids))))
    return out


def pair_batches(rows: list, batch_size: int, seed: int, pad_id: int = 0):
    """Shuffled, length-grouped batches of both tokenisations padded to one width:
    (student batch, teacher batch, aligned (B,))."""
    for idx in length_grouped([max(len(r[0]), len(r[1])) for r in rows], batch_size, seed):
        yield pair_batch(rows, idx, pad_id)


def pair_batch(rows: list, idx: list[int], pad_id: int = 0):
    """The rows `idx` in both tokenisations padded to one width: (student batch, teacher batch, aligned (B,))."""
    from eibert.textcls import collate

    chunk = [rows[j] for j in idx]
    width = max(max(len(r[0]), len(r[1])) for r in chunk)
    pad = lambda ids: ids + [pad_id] * (width - len(ids))
    sb = collate([(pad(r[0]), r[2]) for r in chunk], pad_id)
    tb = collate([(pad(r[1]), r[2]) for r in chunk], pad_id)
    sb["attention_mask"] = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in chunk])
    tb["attention_mask"] = torch.tensor([[1] * len(r[1]) + [0] * (width - len(r[1])) for r in chunk])
    return sb, tb, torch.tensor([r[3] for r in chunk], dtype=torch.bool)


def _student_terms(st: DistillSettings, out: dict, t_out, sb: dict, aligned, hproj, lmap: list[int], stage: int,
                   teacher_hidden: int) -> dict:
    """The student's loss terms: hidden-state MSE and attention KL on rows whose two tokenisations line up
    ([CLS] alone on the others), then (stage 2) KL to the teacher's logits and cross-entropy on the labels."""
    parts: dict[str, torch.Tensor] = {}
    if t_out is not None:
        m = (sb["attention_mask"] * aligned[:, None]).float()
        m[:, 0] = 1.0
        if hproj is not None:
            mse = sum(((hproj(out["hidden"][i + 1]) - t_out.hidden_states[tl + 1].detach()) ** 2 * m[..., None]).sum()
                      / (m.sum() * teacher_hidden) for i, tl in enumerate(lmap))
            parts["hidden"] = st.alpha_hidden * mse / len(lmap)
        if st.alpha_attn > 0 and bool(aligned.any()):
            qm = sb["attention_mask"].float() * aligned[:, None].float()
            parts["attn"] = st.alpha_attn * sum(attn_kl(out["attn"][i], t_out.attentions[tl].detach(), qm)
                                                for i, tl in enumerate(lmap)) / len(lmap)
        if stage == 2:
            parts["kl"] = st.alpha_kl * kd_kl(out["logits"], t_out.logits.detach(), st.temperature)
    if stage == 2:
        parts["ce"] = st.alpha_ce * F.cross_entropy(out["logits"], sb["labels"])
    return parts


def qat_optim(student, qat) -> dict:
    """The optimizer's QAT arguments: the step sizes' own groups and keeping them positive (none without QAT)."""
    if qat is None:
        return {}
    return {"groups": step_groups(student, qat), "post": clamp_steps(student)}


def train_student(student, teacher, rows: list, st: DistillSettings, *, dims: torch.Tensor | None = None,
                  pad_id: int = 0, ckpt_dir: str | Path | None = None, progress: bool = True,
                  on_step=None) -> dict:
    """Train `student` (and, in cross mode, `teacher`) on `rows` = [(student_ids, teacher_ids, label, aligned)].

    Student and teacher tokenise with different vocabularies (pruned vs full), so each row carries both
    id lists and whether they line up token for token (`aligned`); see `pair_rows`. Returns counters
    for the result record. `on_step(step)` is called after every step (tests use it to crash a run)."""
    if st.mode not in ("finetune", "standard", "cross"):
        raise ValueError(f"unknown distillation mode {st.mode!r}; allowed: finetune, standard, cross")
    set_seed(st.seed)
    use_teacher = st.mode != "finetune"
    train_teacher = st.mode == "cross" and st.teacher_lr > 0
    L_t = teacher.config.num_hidden_layers if use_teacher else 0
    lmap = layer_map(L_t, student.spec.layers) if use_teacher else []
    hproj = HiddenProjection(student.spec.hidden, teacher.config.hidden_size,
                             dims) if use_teacher and st.alpha_hidden > 0 else None
    per_epoch = math.ceil(len(rows) / st.batch_size)
    total = st.max_steps or max(1, math.ceil(st.epochs * per_epoch))
    qat = QatSettings.from_json(st.qat) if st.qat else None
    if qat is not None:  # the artifact's quantization in the forward pass from the first step
        start_qat(student, qat)
    modules = {"student": student, "teacher": teacher, **({"hproj": hproj} if hproj else {})}
    optims = {"student": adamw([student] + ([hproj] if hproj else []), lr=st.student_lr, weight_decay=st.weight_decay,
                               total=total, warmup_ratio=st.warmup_ratio, **qat_optim(student, qat))}
    if train_teacher:  # its word embeddings stay frozen: the student never sees most of those rows (pruned
        # vocabulary), and updating a 30k x H matrix every step would cost more than the rest
        optims["teacher"] = adamw([teacher], lr=st.teacher_lr, weight_decay=st.weight_decay, total=total,
                                  warmup_ratio=st.warmup_ratio, skip=lambda n: "word_embeddings" in n)
    state = {"stage": 1 if st.stage_gates and use_teacher else 2, "gate_hits": 0, "stage1_steps": 0}

    def step(idx: list[int]):
        sb, tb, aligned = pair_batch(rows, idx, pad_id)
        out = student(sb["input_ids"], sb["attention_mask"])
        t_out = None
        if use_teacher:
            with torch.set_grad_enabled(train_teacher):
                t_out = teacher(input_ids=tb["input_ids"], attention_mask=tb["attention_mask"],
                                output_hidden_states=st.alpha_hidden > 0, output_attentions=st.alpha_attn > 0)
        parts = _student_terms(st, out, t_out, sb, aligned, hproj, lmap, state["stage"], teacher.config.hidden_size)
        objectives = {"student": sum(parts.values()) if parts else out["logits"].sum() * 0.0}
        if train_teacher:
            objectives["teacher"] = parts["teacher"] = (
                F.cross_entropy(t_out.logits, tb["labels"])
                + st.teacher_kl * kd_kl(t_out.logits, out["logits"].detach(), st.temperature))
        return objectives, parts

    def after(n: int, end_of_epoch: bool) -> bool:
        if state["stage"] == 1:  # stage 1: intermediate layers only, until the hidden loss stays under the gate
            state["stage1_steps"] += 1
            if n % st.gate_every == 0:
                low = loop.losses.get("hidden", 0.0) < st.gate_threshold
                state["gate_hits"] = state["gate_hits"] + 1 if low else 0
                if state["gate_hits"] >= st.gate_patience or state["stage1_steps"] >= total // 2:
                    state["stage"] = 2
        return False

    student.train()
    teacher.train(train_teacher)
    if train_teacher:
        teacher.get_input_embeddings().weight.requires_grad_(False)
    loop = TrainLoop(total=total, per_epoch=per_epoch, ckpt=Path(ckpt_dir) / "train.pt" if ckpt_dir else None,
                     ckpt_every=st.ckpt_every, desc=f"student ({st.mode})", progress=progress, on_step=on_step)
    fit = loop.run(modules, optims, step=step, after=after, state=state,
                   batches=lambda epoch: length_grouped([max(len(r[0]), len(r[1])) for r in rows], st.batch_size,
                                                        st.seed + epoch))
    student.eval()
    teacher.eval()
    return {"steps": fit["steps"], "resumed_from": fit["resumed_from"], "losses": fit["losses"], "train_s": fit["train_s"],
            "train_s_this_run": fit["train_s_this_run"], "stage1_steps": state["stage1_steps"],
            "teacher_trained": train_teacher, "layer_map": lmap}
