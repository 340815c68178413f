"""Tiny training runs of each mode, importable by a subprocess that SIGKILLs itself (tests/test_resume.py).

    python -c "..." MODE KILL_AT TEACHER_DIR WORK_DIR OUT   # the state dict of what was trained goes to OUT
"""

import os
import signal
import sys
import tempfile
from pathlib import Path

import torch


def _data(folder: Path):
    from eibert.data import load_task
    from tests.conftest import tiny_sentences

    rows = tiny_sentences(80)
    for name, part in (("train", rows[:48]), ("dev", rows[48:])):
        (folder / f"{name}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in part))
    return load_task(source="files", train_file=folder / "train.tsv", dev_file=folder / "dev.tsv", text_fields=["sentence"])


def teacher(teacher_dir: str, work: Path, on_step) -> dict:
    """Teacher fine-tuning: 6 steps an epoch, 2 epochs, a checkpoint every 4 steps (and every epoch)."""
    from eibert.teacher import finetune_teacher

    res = finetune_teacher(teacher_dir, _data(Path(tempfile.mkdtemp())), cache_dir=str(work),
                           hp={"epochs": 2, "batch_size": 8, "learning_rate": 1e-3}, max_seq_len=32, progress=False,
                           on_step=on_step, ckpt_every=4)
    from eibert.hub import load_classifier

    return load_classifier(res.model_dir).state_dict()


def live(teacher_dir: str, work: Path, on_step, gates: bool) -> dict:
    """Cross-distillation with the teacher live: 12 steps, a checkpoint every 3; with gates the hidden-state gate
    is hit at steps 2 and 4 and opens at 4 (its counters must survive a kill at step 3 or 5)."""
    from eibert.distill import DistillSettings, pair_rows, train_student
    from eibert.hub import load_classifier, load_tokenizer
    from eibert.student import Student, StudentSpec, init_from_teacher
    from eibert.textcls import encode, set_seed

    data = _data(Path(tempfile.mkdtemp()))
    tok, t = load_tokenizer(teacher_dir), load_classifier(teacher_dir)
    set_seed(0)
    rows = encode(tok, data.train, 32)
    spec = StudentSpec(vocab_size=tok.vocab_size, hidden=16, heads=1, ffn=32, embedding_size=8, layers=1, integrate=True,
                       teacher_hidden=32, max_positions=32, dropout=0.1)
    student = Student(spec)
    dims = torch.arange(16)
    init_from_teacher(student, t, list(range(tok.vocab_size)), dims)
    st = DistillSettings(mode="cross", batch_size=8, max_steps=12, ckpt_every=3, stage_gates=gates, gate_every=2,
                         gate_patience=2, gate_threshold=1e9, teacher_lr=1e-4)
    fit = train_student(student, t, pair_rows(rows, rows, list(range(tok.vocab_size))), st, dims=dims, ckpt_dir=work / "ck",
                        progress=False, on_step=on_step)
    out = {f"student.{k}": v for k, v in student.state_dict().items()}
    out.update({f"teacher.{k}": v for k, v in t.state_dict().items()})
    out["stage1_steps"] = torch.tensor(fit["stage1_steps"])
    return out


def main() -> None:
    mode, kill_at, teacher_dir, work, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(1)

    def on_step(step: int) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "teacher":
        state = teacher(teacher_dir, work, on_step)
    else:
        state = live(teacher_dir, work, on_step, gates=mode == "live-gates")
    torch.save(state, out)


if __name__ == "__main__":
    main()
