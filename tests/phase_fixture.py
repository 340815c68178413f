"""A tiny phased-distillation run, importable by a subprocess (the SIGKILL resume test)."""

from eibert.data import load_task
from eibert.distill import DistillSettings, pair_rows
from eibert.hub import load_classifier, load_tokenizer
from eibert.phase_data import slot_rows, training_rows
from eibert.phase_training import PhaseSettings, run_phases
from eibert.quant import QuantSettings
from eibert.student import Student, StudentSpec, init_from_teacher, layer_map, pick_hidden_dims
from eibert.teacher_outputs import teacher_outputs
from eibert.textcls import encode, set_seed
from eibutil.cache import Cache

PHASES = (PhaseSettings("intermediate", epochs=1, patience=None), PhaseSettings("prediction", epochs=2),
          PhaseSettings("cross", epochs=0.25))
# QAT from the prediction phase on: INT4 in blocks of 16 inputs, the head folded first (as the artifact will)
QAT_PHASES = (PHASES[0], PhaseSettings("prediction", epochs=2, qat=True), PHASES[2])
QAT = {"quant": QuantSettings(granularity="per-channel", bits=4, block=16).to_json(), "fold": True}


def run(teacher_dir: str, ckpt_dir: str, on_step=None, qat: bool = False):
    """Returns (report, student state) of intermediate -> prediction -> cross on 48 rows (+48 augmented); with
    `qat`, quantization-aware from the prediction phase on."""
    import tempfile
    from pathlib import Path

    from tests.conftest import tiny_sentences

    folder = Path(tempfile.mkdtemp())
    rows = tiny_sentences(80)
    for name, part in (("train", rows[:48]), ("dev", rows[48:])):
        (folder / f"{name}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in part))
    data = load_task(source="files", train_file=folder / "train.tsv", dev_file=folder / "dev.tsv", text_fields=["sentence"])
    tok, teacher = load_tokenizer(teacher_dir), load_classifier(teacher_dir).eval()
    set_seed(0)
    texts, labels = training_rows(data, [t.upper()[: len(t) // 2] for t in data.train["text_a"]])
    outputs, _ = teacher_outputs(teacher, tok, texts, layers=layer_map(2, 1), max_seq_len=32, cache=Cache(folder / "c"),
                                 key_spec={}, progress=False)
    old_ids = list(range(tok.vocab_size))
    spec = StudentSpec(vocab_size=tok.vocab_size, hidden=16, heads=1, ffn=32, embedding_size=8, layers=1, integrate=True,
                       teacher_hidden=32,
                       max_positions=32, dropout=0.1)
    student = Student(spec)
    t_rows = encode(tok, data.train, 32)
    dims = pick_hidden_dims(teacher, t_rows, 16)
    init_from_teacher(student, teacher, old_ids, dims)
    phases = QAT_PHASES if qat else PHASES
    st = DistillSettings(mode="cross", batch_size=8, ckpt_every=5, phases=phases, qat=QAT if qat else None)
    rep = run_phases(student, teacher, phases, st, rows=slot_rows(tok, texts, labels, 32), outputs=outputs,
                     cross_rows=pair_rows(t_rows, t_rows, old_ids), dims=dims, selection=encode(tok, data.dev, 32), pad_id=0,
                     ckpt_dir=ckpt_dir, progress=False, on_step=on_step)
    return rep, student.state_dict()
