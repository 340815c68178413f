"""The compression sections of the experiment config (task, teacher, student, vocabulary, distillation,
augmentation, quantization) and the strict base every section shares; harness/config/schema.py adds the run's
sections and the whole config, and is the one import callers use.
"""

import types
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PosInt = Annotated[int, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
LossWeight = Annotated[float, Field(ge=0, le=1000)]  # finite (every section refuses inf/nan), and no overflow to NaN


def _base_types(annotation) -> set:
    """The plain types a field annotation admits (through Annotated, Optional and unions)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_base_types(a) for a in typing.get_args(annotation)))
    return {annotation}


class Section(BaseModel):
    # floats must be finite everywhere (a loss weight of .inf trains a model of NaNs)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strict_scalars(cls, data):
        """No `true` for an integer, no 2.0 or 1e38 for an integer, no 1 for a boolean: YAML says what it means."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            if name not in data:
                continue
            v, kinds = data[name], _base_types(field.annotation)
            if int in kinds and bool not in kinds and (isinstance(v, bool) or isinstance(v, float)):
                raise ValueError(f"{name}: must be an integer, not {v!r}")
            if kinds == {bool} and not isinstance(v, bool):
                raise ValueError(f"{name}: must be true or false, not {v!r}")
        return data


class SelectionConfig(Section):
    """A selection split carved from train (eibert.selection): whole sentences held out with their sub-phrases."""

    sentences: Annotated[int, Field(ge=0, le=100_000)] = 0  # 0: no selection split
    min_words: Annotated[int, Field(ge=1, le=200)] = 8
    min_phrase_words: Annotated[int, Field(ge=1, le=200)] = 3
    seed: Seed = 0


class TaskConfig(Section):
    """The task and its data: the embedded SST-2 sample, a Hugging Face hub dataset or local files."""

    name: str = "sst2"
    source: Literal["embedded", "hub", "files"] = "embedded"
    hub_id: str | None = None  # e.g. "glue" (source: hub)
    hub_config: str | None = None  # e.g. "sst2"
    train_split: str = "train"
    dev_split: str = "validation"
    train_file: Path | None = None  # .tsv .csv .json .jsonl .parquet (source: files)
    dev_file: Path | None = None
    text_fields: Annotated[list[str], Field(min_length=1, max_length=2)] = ["sentence"]
    label_field: str = "label"
    max_seq_len: Annotated[int, Field(ge=8, le=512)] = 64
    max_train_rows: PosInt | None = None  # subsample the train split (stratified, seeded)
    selection: SelectionConfig = SelectionConfig()

    @model_validator(mode="after")
    def _source_needs(self) -> "TaskConfig":
        if self.source == "hub" and not self.hub_id:
            raise ValueError("source 'hub' needs task.hub_id (for example: glue, with hub_config: sst2)")
        if self.source == "files" and (self.train_file is None or self.dev_file is None):
            raise ValueError("source 'files' needs both task.train_file and task.dev_file")
        return self


class TeacherConfig(Section):
    """The teacher BERT and how it is fine-tuned on the task (cached by content)."""

    model: str = "bundled"  # "bundled" (all-MiniLM-L6-v2), a Hugging Face id, or a local folder
    epochs: Annotated[float, Field(gt=0, le=100)] = 3
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    learning_rate: Annotated[float, Field(gt=0, lt=1)] = 5e-5
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = 0.01
    warmup_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    max_steps: PosInt | None = None
    seed: Seed = 0


class StudentConfig(Section):
    """Shape of the student BERT; initialised from the teacher where shapes allow."""

    layers: Annotated[int, Field(ge=1, le=12)] = 2
    hidden: Annotated[int, Field(ge=16, le=1024)] = 256
    heads: Annotated[int, Field(ge=1, le=16)] = 8  # hidden/heads = the teacher's head size lets whole heads be kept
    ffn: Annotated[int, Field(ge=16, le=4096)] = 512
    embedding_size: Annotated[int, Field(ge=8, le=1024)] | None = 128  # None: same as hidden
    share_layers: bool = False  # ALBERT-style: one set of layer weights applied `layers` times
    max_positions: Annotated[int, Field(ge=8, le=4096)] | None = None  # None: task.max_seq_len; larger lets it run longer inputs
    init: Literal["teacher", "random"] = "teacher"
    fold_head: bool = False  # fold the integrated head's bridge into its pooler at export (one matrix; frees bytes)

    @model_validator(mode="after")
    def _heads_divide(self) -> "StudentConfig":
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class VocabConfig(Section):
    """Hard token (vocabulary) pruning."""

    size: Annotated[int, Field(ge=100, le=250_000)] | None = 8000  # None: keep the full vocabulary
    method: Literal["attention", "frequency"] = "attention"
    importance_rows: PosInt | None = 2000  # sentences scored for attention importance


class PhaseConfig(Section):
    """One phase of `compress.distill.phases` (eibert.phase_training)."""

    kind: Literal["intermediate", "prediction", "cross"]
    epochs: Annotated[float, Field(gt=0, le=100)] = 1.0
    lr: Annotated[float, Field(gt=0, lt=1)] = 3e-4
    warmup_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    augmented: bool = True  # intermediate/prediction: train on the augmented rows too
    patience: Annotated[int, Field(ge=1, le=1000)] | None = 2  # epochs without a selection gain before the phase stops
    qat: bool = False  # with distill.qat: quantization-aware training starts at this phase (none marked: the first)


class AugmentConfig(Section):
    """Teacher-labelled augmentation of the train rows (eibert.augment); used by `distill.phases`."""

    copies: Annotated[float, Field(ge=0, le=100)] = 0.0  # new rows per train row on average (0: none)
    p_replace: Annotated[float, Field(ge=0, le=1)] = 0.4
    neighbours: Annotated[int, Field(ge=1, le=1000)] = 15
    p_mask: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_ngram: Annotated[float, Field(ge=0, le=1)] = 0.25
    max_ngram: Annotated[int, Field(ge=1, le=100)] = 5
    seed: Seed = 0


class DistillConfig(Section):
    """How the student learns: plain fine-tuning, one-way distillation or cross-distillation."""

    mode: Literal["finetune", "standard", "cross"] = "cross"
    integrate: bool = True  # parameter integration: the teacher's task layers on top of the student
    epochs: Annotated[float, Field(gt=0, le=100)] = 3
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    student_lr: Annotated[float, Field(gt=0, lt=1)] = 3e-4
    teacher_lr: Annotated[float, Field(ge=0, lt=1)] = 1e-5
    temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    alpha_ce: LossWeight = 1.0
    alpha_kl: LossWeight = 1.0
    alpha_hidden: LossWeight = 1.0
    alpha_attn: LossWeight = 0.0
    teacher_kl: LossWeight = 0.5  # the teacher's pull toward the student (cross mode)
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = 0.01  # AdamW's (biases and LayerNorm weights exempt)
    stage_gates: bool = False
    max_steps: PosInt | None = None
    seed: Seed = 0
    phases: Annotated[list[PhaseConfig], Field(max_length=20)] = []  # in order; empty: one `mode` run of `epochs`
    qat: bool = False  # quantization-aware training: compress.quant in the student's forward pass (eibert.qat)

    @model_validator(mode="after")
    def _qat_phases(self) -> "DistillConfig":
        marked = [i for i, p in enumerate(self.phases) if p.qat]
        if marked and not self.qat:
            raise ValueError(f"phases[{marked[0]}].qat needs qat: true (quantization-aware training) in distill")
        return self


class QuantConfig(Section):
    """Weight quantization of the student."""

    granularity: Literal["none", "per-tensor", "per-channel", "per-module"] = "per-channel"
    method: Literal["lsq", "minmax"] = "lsq"
    bits: Literal[4, 8] = 8  # 4: every linear layer INT4 (MatMulNBits), the embedding table INT8
    activations: bool = False
    mixed: bool = False  # INT4 feed-forward weights, FP16 embeddings and LayerNorm
    block: Literal[16, 32, 64, 128, 256] | None = None  # INT4 steps per block of inputs (None: per granularity)
    calib_rows: Annotated[int, Field(ge=8, le=100_000)] = 512
    steps_per_block: Annotated[int, Field(ge=0, le=100_000)] = 200
    lr: Annotated[float, Field(gt=0, lt=1)] = 1e-2  # relative to each step size

    @model_validator(mode="after")
    def _supported(self) -> "QuantConfig":
        int4 = self.bits == 4 or self.mixed
        if int4 and self.granularity == "per-module":
            raise ValueError("INT4 (bits: 4 or mixed: true) needs granularity per-tensor or per-channel (INT4 and INT8 "
                             "cannot share a step size)")
        if self.block is not None and not int4:
            raise ValueError("block is for INT4 weights: set bits: 4 or mixed: true")
        return self


class CompressConfig(Section):
    student: StudentConfig = StudentConfig()
    vocab: VocabConfig = VocabConfig()
    distill: DistillConfig = DistillConfig()
    augment: AugmentConfig = AugmentConfig()
    quant: QuantConfig = QuantConfig()

    @model_validator(mode="after")
    def _qat_quant(self) -> "CompressConfig":
        if self.distill.qat and self.quant.granularity == "none":
            raise ValueError("distill.qat trains with the artifact's quantization: set quant.granularity")
        return self
