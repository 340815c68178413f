"""Data for phased distillation: augmented rows (cached), teacher outputs (cached), student rows with word slots.

    from eibert.phase_data import train_phased
    fit = train_phased(student, teacher, data, t_tok, s_tok, old_ids, distill, augment, cache=cache, dims=dims, ...)

Everything the teacher computes for the student is computed once per content: the augmented texts
(keyed by the teacher, the train rows and the augmentation settings) and the teacher's outputs over
original + augmented rows (keyed by the teacher and the texts). The student's rows carry their word
slots so its hidden-state loss lines up with the teacher's word by word.
"""

import json
import time

from eibert import versions
from eibert.augment import AugmentSettings, augment_texts
from eibert.distill import pair_rows
from eibert.phase_training import run_phases
from eibert.student import layer_map
from eibert.teacher_outputs import teacher_outputs, word_slots
from eibert.textcls import encode


def cached_augmentation(cache, teacher, t_tok, data, st: AugmentSettings, teacher_fp: str) -> tuple[list[str], dict]:
    """The augmented texts for `data.train` (cached by content); returns (texts, report)."""
    if st.copies <= 0:
        return [], {"rows": 0}
    key = cache.key("augment", {"v": versions.AUGMENT, "teacher": teacher_fp, "train": data.checksums, "rows": len(data.train),
                                "settings": st.to_json()})
    if (hit := cache.get("augment", key)) is None:
        t0 = time.perf_counter()
        emb = teacher.get_input_embeddings().weight.detach().numpy()
        texts, src = augment_texts(list(data.train["text_a"]), t_tok, emb, st)
        report = {"rows": len(texts), "augment_s": time.perf_counter() - t0, "key": key}
        with cache.publish("augment", key, {"report": report}) as tmp:
            (tmp / "rows.json").write_text(json.dumps({"texts": texts, "source": src}))
        hit = cache.get("augment", key)
    return json.loads((hit / "rows.json").read_text())["texts"], {**cache.meta("augment", key)["report"], "key": key}


def training_rows(data, augmented: list[str]) -> tuple[list[str], list[int]]:
    """Texts and labels to train on: the train rows with their labels, then the augmented (and transfer)
    rows with label -1 (no hard label: their only targets are the teacher's outputs)."""
    return list(data.train["text_a"]) + augmented, list(data.train["label"]) + [-1] * len(augmented)


def slot_rows(tok, texts: list[str], labels: list[int], max_seq_len: int) -> list[tuple]:
    """[(ids, word slots, label or -1, index into the teacher outputs)] for each text."""
    enc = tok(texts, truncation=True, max_length=max_seq_len)
    return [(ids, word_slots(enc.word_ids(i), len(ids)), y, i) for i, (ids, y) in enumerate(zip(enc["input_ids"], labels))]


def train_phased(model, teacher, data, t_tok, s_tok, old_ids: list[int], distill, augment: AugmentSettings | None, *, cache, dims,
                 max_seq_len: int, teacher_fp: str, ckpt_dir, progress: bool = True, on_step=None, targets=None,
                 transfer: list[str] = ()) -> dict:
    """Augment, add the `transfer` texts, label with the teacher, replace its logits by the `targets`
    teachers' (eibert.targets), and run `distill.phases` (see eibert.phase_training)."""
    augment = augment or AugmentSettings()
    aug, aug_report = cached_augmentation(cache, teacher, t_tok, data, augment, teacher_fp)
    texts, labels = training_rows(data, aug + list(transfer))
    lmap = layer_map(teacher.config.num_hidden_layers, model.spec.layers)
    outputs, out_report = teacher_outputs(teacher, t_tok, texts, layers=lmap, max_seq_len=max_seq_len, cache=cache,
                                          key_spec={"teacher": teacher_fp}, progress=progress)
    t_report = None
    if targets is not None and targets.teachers:
        from eibert.targets import resolve_targets

        outputs.logits, t_report = resolve_targets(targets, texts, outputs.logits, cache=cache, max_seq_len=max_seq_len,
                                                   progress=progress)
    rows = slot_rows(s_tok, texts, labels, max_seq_len)
    needs_cross = any(p.kind == "cross" for p in distill.phases)
    cross_rows = pair_rows(encode(s_tok, data.train, max_seq_len), encode(t_tok, data.train, max_seq_len),
                           old_ids) if needs_cross else []
    selection = encode(s_tok, data.selection, max_seq_len) if data.selection is not None else []
    fit = run_phases(model, teacher, distill.phases, distill, rows=rows, outputs=outputs, cross_rows=cross_rows, dims=dims,
                     selection=selection, pad_id=s_tok.pad_token_id, ckpt_dir=ckpt_dir, progress=progress, on_step=on_step)
    return {**fit, "augment": aug_report, "teacher_outputs": out_report, "train_rows": len(data.train), "rows": len(rows),
            "transfer_rows": len(transfer), **({"targets": t_report} if t_report else {})}
