"""Multi-phase distillation: intermediate -> prediction from cached teacher outputs, then cross.

    from eibert.phase_training import PhaseSettings, run_phases
    phases = (PhaseSettings("intermediate", epochs=1), PhaseSettings("prediction", epochs=3), PhaseSettings("cross", epochs=0.5))
    report = run_phases(student, teacher, phases, distill, rows=rows, outputs=outputs, ...)

- intermediate: the student's word-level hidden states at its layers (through a learned projection)
  match the teacher's at the mapped layers, and the integrated head's input (the bridge of [CLS])
  matches the teacher's [CLS] state that feeds the pooler (MSE; every row, original and augmented).
- prediction: KL to the teacher's temperature-softened logits on every row, plus cross-entropy on the
  original rows (augmented rows have soft labels only).
- cross: the paper's cross-distillation (eibert.distill.train_student, mode "cross") on the original
  rows. Its teacher keeps training, so cached outputs would be stale: it runs the teacher live.
Each phase has its own epochs, learning rate and linear schedule. After every epoch the student is
scored on the selection split; the best epoch's weights are kept (checkpoint choice) and a phase stops
after `patience` epochs without a gain (early stopping). Checkpoints every `ckpt_every` steps, loadable
with `torch.load(weights_only=True)`, let a killed run resume mid-phase and end with the same weights.
"""

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eibert.distill import HiddenProjection, kd_kl, qat_optim, train_student
from eibert.qat import QatSettings, start_qat
from eibert.student import layer_map
from eibert.teacher_outputs import slot_means
from eibert.textcls import accuracy, length_grouped, predict_logits, set_seed
from eibert.trainloop import TrainLoop, adamw, save_state
from eibutil.files import content_key

KINDS = ("intermediate", "prediction", "cross")


@dataclass(frozen=True)
class PhaseSettings:
    kind: str  # intermediate | prediction | cross
    epochs: float = 1.0
    lr: float = 3e-4
    warmup_ratio: float = 0.1
    augmented: bool = True  # train on the augmented rows too (intermediate, prediction)
    patience: int | None = 2  # epochs without a selection gain before the phase stops (None: never)
    qat: bool = False  # with distill.qat: quantization-aware training starts at this phase (see run_phases)

    def to_json(self) -> dict:
        d = asdict(self)
        if not d["qat"]:  # phase lists from before QAT keep their keys
            del d["qat"]
        return d


def _batch(rows: list, idx: list[int], outputs, pad_id: int, hidden: bool = True) -> dict:
    chunk = [rows[j] for j in idx]
    width = max(len(r[0]) for r in chunk)
    n = len(chunk)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    slots = torch.full((n, width), -1, dtype=torch.long)
    for b, (s_ids, s_slots, _, _) in enumerate(chunk):
        ids[b, : len(s_ids)] = torch.tensor(s_ids)
        mask[b, : len(s_ids)] = 1
        slots[b, : len(s_ids)] = torch.tensor(s_slots)
    t_idx = [r[3] for r in chunk]
    base = {"input_ids": ids, "attention_mask": mask, "slots": slots, "labels": torch.tensor([r[2] for r in chunk]),
            "t_logits": torch.from_numpy(outputs.logits[t_idx])}
    if not hidden:
        return base
    t_hid = [outputs.hidden(i) for i in t_idx]
    S = max(min(len(h), max(r[1]) + 1) for h, r in zip(t_hid, chunk))
    hid = np.zeros((n, S) + t_hid[0].shape[1:], dtype=np.float32)
    valid = torch.zeros((n, S))
    for b, (h, r) in enumerate(zip(t_hid, chunk)):
        k = min(len(h), max(r[1]) + 1, S)
        hid[b, :k] = h[:k]
        valid[b, :k] = 1.0
    return {**base, "t_hidden": torch.from_numpy(hid), "valid": valid}


def _loss(kind: str, student, hproj, b: dict, lmap: list[int], st) -> dict[str, torch.Tensor]:
    out = student(b["input_ids"], b["attention_mask"])
    parts: dict[str, torch.Tensor] = {}
    if kind == "intermediate":
        S, v = b["valid"].shape[1], b["valid"][..., None]
        mse = 0.0
        for i in range(len(lmap)):
            s_words = slot_means(out["hidden"][i + 1], b["slots"], S)  # (B, S, Hs)
            mse = mse + (((hproj(s_words) - b["t_hidden"][:, :, i]) ** 2) * v).sum() / (v.sum() * b["t_hidden"].shape[-1])
        parts["hidden"] = st.alpha_hidden * mse / len(lmap)
        if student.bridge is not None:  # the integrated head's input: the teacher's [CLS] state at its last layer
            parts["pooled"] = st.alpha_hidden * F.mse_loss(student.bridge(out["hidden"][-1][:, 0]), b["t_hidden"][:, 0, -1])
    else:
        parts["kl"] = st.alpha_kl * kd_kl(out["logits"], b["t_logits"], st.temperature)
        hard = b["labels"] >= 0
        if bool(hard.any()) and st.alpha_ce > 0:
            parts["ce"] = st.alpha_ce * F.cross_entropy(out["logits"][hard], b["labels"][hard])
    return parts


def _selection(student, rows: list, pad_id: int) -> float | None:
    if not rows:
        return None
    acc = accuracy(predict_logits(student, rows, pad_id=pad_id), [y for _, y in rows])
    student.train()
    return acc


def cached_phase(student, ph: PhaseSettings, st, *, rows: list, outputs, lmap: list[int], dims, teacher_hidden: int,
                 selection: list, pad_id: int, ckpt: Path | None, seed: int, progress: bool, on_step=None,
                 qat: QatSettings | None = None) -> dict:
    """One intermediate or prediction phase over `rows` = [(student ids, word slots, label or -1, output index)];
    with `qat` the student is already fake-quantized and its step sizes learn too."""
    set_seed(seed)
    hproj = HiddenProjection(student.spec.hidden, teacher_hidden, dims) if ph.kind == "intermediate" else None
    per_epoch = math.ceil(len(rows) / st.batch_size)
    total = max(1, math.ceil(ph.epochs * per_epoch)) if not st.max_steps else st.max_steps
    opt = adamw([student] + ([hproj] if hproj else []), lr=ph.lr, weight_decay=st.weight_decay, total=total,
                warmup_ratio=ph.warmup_ratio, **qat_optim(student, qat))
    state = {"best": -1.0, "best_state": None, "stale": 0, "history": []}
    lengths = [len(r[0]) for r in rows]

    def step(idx: list[int]):
        parts = _loss(ph.kind, student, hproj, _batch(rows, idx, outputs, pad_id, hidden=ph.kind == "intermediate"), lmap, st)
        return {"student": sum(parts.values())}, parts

    def after(n: int, end_of_epoch: bool) -> bool:
        """Score the selection split after every epoch: keep the best epoch's weights, stop after `patience` stale ones."""
        if not end_of_epoch:
            return False
        acc = _selection(student, selection, pad_id)
        state["history"].append({"step": n, "selection_accuracy": acc})
        if acc is not None and acc > state["best"]:
            state["best"], state["stale"] = acc, 0
            state["best_state"] = {k: v.detach().clone() for k, v in student.state_dict().items()}
        else:
            state["stale"] += 1
        return ph.patience is not None and acc is not None and state["stale"] >= ph.patience

    student.train()
    loop = TrainLoop(total=total, per_epoch=per_epoch, ckpt=ckpt, ckpt_every=st.ckpt_every, desc=f"student ({ph.kind})",
                     progress=progress, on_step=on_step)
    modules = {"student": student, **({"hproj": hproj} if hproj else {})}
    fit = loop.run(modules, {"student": opt}, step=step, after=after, state=state,
                   batches=lambda epoch: length_grouped(lengths, st.batch_size, seed + epoch))
    if state["best_state"] is not None:
        student.load_state_dict(state["best_state"])
    best = state["best"]
    return {"kind": ph.kind, "steps": fit["steps"], "resumed_from": fit["resumed_from"], "losses": fit["losses"],
            "train_s": fit["train_s"], "train_s_this_run": fit["train_s_this_run"], "selection_history": state["history"],
            "selection_accuracy": best if best >= 0 else None, "early_stopped": fit["stopped"]}


def run_phases(student, teacher, phases: tuple, st, *, rows: list, outputs, cross_rows: list, dims, selection: list,
               pad_id: int, ckpt_dir: str | Path | None, progress: bool = True, on_step=None) -> dict:
    """Run `phases` in order (see module doc); a finished phase is not redone after a restart."""
    for ph in phases:
        if ph.kind not in KINDS:
            raise ValueError(f"unknown phase kind {ph.kind!r}; allowed: {', '.join(KINDS)}")
    lmap = layer_map(teacher.config.num_hidden_layers, student.spec.layers)
    root = Path(ckpt_dir) if ckpt_dir else None
    reports = []
    qat, qat_from = qat_start(st, phases)
    for k, ph in enumerate(phases):
        ph_qat = qat if k >= qat_from else None  # qat_from is past the last phase without QAT
        if ph_qat is not None:
            start_qat(student, ph_qat)
        # A phase's folder is named by the phases up to it, so phase lists with a common prefix share it
        prefix = content_key([p.to_json() for p in phases[: k + 1]])
        folder = root / f"phase-{k}-{ph.kind}-{prefix}" if root else None
        done = folder / "done.pt" if folder else None
        if done is not None and done.is_file():
            s = torch.load(done, weights_only=True)
            student.load_state_dict(s["student"])
            reports.append({**s["report"], "cache_hit": True})
            continue
        ck = folder / "train.pt" if folder else None
        if ph.kind == "cross":
            sub = replace(st, mode="cross", epochs=ph.epochs, student_lr=ph.lr, warmup_ratio=ph.warmup_ratio, stage_gates=False,
                          qat=st.qat if ph_qat is not None else None)
            rep = {"kind": "cross", **train_student(student, teacher, cross_rows, sub, dims=dims, pad_id=pad_id,
                                                    ckpt_dir=ck.parent if ck else None, progress=progress, on_step=on_step)}
            rep["selection_accuracy"] = _selection(student, selection, pad_id)
            rep.pop("layer_map", None)
        else:
            use = rows if ph.augmented else [r for r in rows if r[2] >= 0]
            rep = cached_phase(student, ph, st, rows=use, outputs=outputs, lmap=lmap, dims=dims,
                               teacher_hidden=teacher.config.hidden_size,
                               selection=selection, pad_id=pad_id, ckpt=ck, seed=st.seed + 1000 * k, progress=progress,
                               on_step=on_step, qat=ph_qat)
        rep = {k2: v for k2, v in rep.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))}
        if done is not None:
            save_state(done, {"student": student.state_dict(), "report": rep})
        reports.append({**rep, "cache_hit": False})
        student.train()
    student.eval()
    return {"phases": reports, "steps": sum(r.get("steps", 0) for r in reports),
            **({"qat_from_phase": qat_from} if qat is not None else {})}


def qat_start(st, phases: tuple) -> tuple[QatSettings | None, int]:
    """(QAT settings, the index of the phase it starts at): the first phase marked `qat`, else the first phase."""
    marked = [k for k, ph in enumerate(phases) if ph.qat]
    if marked and not st.qat:
        raise ValueError(f"phase {marked[0]} ({phases[marked[0]].kind}) asks for qat, but distill.qat is not set")
    return (QatSettings.from_json(st.qat), marked[0] if marked else 0) if st.qat else (None, len(phases))
