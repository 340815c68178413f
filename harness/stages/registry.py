"""Every stage the graph can hold, once: its function, inputs, output record, the config sections that key it,
its code version, CPUs, whether it needs a device, how it fans out, the measurement row it contributes and the
folders it names (they travel). The stage order, the model chain and the roles the engine needs are derived here;
the engine (graph, scheduler, pipeline, reports) asks this table and never names a stage.

    from harness.stages.registry import REGISTRY, ORDER, ROLES
    REGISTRY["student"].cpus, REGISTRY["measure"].device, ROLES.model   # 1, True, "artifact"
    with registered(Stage("shout", fn, ("teacher",), ShoutRecord, sections=("task",))):   # a stage more, for a test
        build_graph(variants, inventory)
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from eibert.cached_stages import ArtifactRecord, ImportanceRecord, StudentRecord, VocabRecord
from harness.stages import device, model
from harness.stages.base import Stage
from harness.stages.records import BuildRecord, MeasureRecord, TeacherRecord

REGISTRY: dict[str, Stage] = {s.name: s for s in (
    Stage("teacher", model.teacher, (), TeacherRecord, cpus="all", row=model.teacher_row, paths=lambda o: [o["model_dir"]],
          sections=("task", "teacher")),
    Stage("importance", model.importance, ("teacher",), ImportanceRecord, cpus="all", paths=lambda o: [o["dir"]],
          sections=("compress.vocab.method", "compress.vocab.importance_rows")),
    Stage("vocab", model.vocab, ("teacher", "importance"), VocabRecord, paths=lambda o: [o["dir"]],
          sections=("compress.vocab.size",)),
    Stage("student", model.student, ("teacher", "vocab"), StudentRecord, paths=lambda o: [o["dir"], o["vocab"]["dir"]],
          # quantization-aware training puts the artifact's quantization into the student
          sections=("compress.student", "compress.distill", "compress.quant"),
          when=(("compress.quant", "compress.distill.qat"),)),
    Stage("artifact", model.artifact, ("teacher", "student"), ArtifactRecord, row=model.artifact_row,
          paths=lambda o: [o["artifact_dir"]], sections=("compress.quant",)),
    Stage("build", device.build, ("artifact",), BuildRecord, paths=lambda o: [str(Path(o["lib"]).parent)], fanout="target",
          sections=("measure.seq_len",)),
    Stage("measure", device.measure, ("artifact", "build", "teacher"), MeasureRecord, device=True, row=device.measure_row,
          fanout="device", reference="teacher", sections=("measure",)),
)}


def ordered(registry: dict[str, Stage]) -> tuple[str, ...]:
    """The stages in dependency order (each after its inputs; ties in the registry's order)."""
    out: list[str] = []
    while len(out) < len(registry):
        ready = [n for n, s in registry.items() if n not in out and all(i in out for i in s.inputs)]
        if not ready:
            raise ValueError(f"stages with unknown or circular inputs: {sorted(set(registry) - set(out))}")
        out.append(ready[0])
    return tuple(out)


@dataclass(frozen=True)
class Roles:
    """What the engine needs to know of the stage set, derived from it."""

    chain: tuple[str, ...]  # the model chain, once per variant (fanout None), in order
    root: str  # the chain's first stage (no inputs): its rows are the run's, not a variant's
    model: str  # the chain's last stage: the deployable model that builds and measurements take
    build: str | None  # the stage made per target
    measure: str | None  # the stage made per device and runtime


def roles(registry: dict[str, Stage]) -> Roles:
    """The chain (fan-out None) in order; the model is the chain stage the fan-out stages take (besides a
    reference), or the chain's last stage where nothing fans out."""
    order = ordered(registry)
    chain = tuple(n for n in order if registry[n].fanout is None)
    fan = {registry[n].fanout: n for n in order if registry[n].fanout}
    taken = [i for n in fan.values() for i in registry[n].inputs if i in chain and i != registry[n].reference]
    return Roles(chain, chain[0], taken[0] if taken else chain[-1], fan.get("target"), fan.get("device"))


ORDER = ordered(REGISTRY)
ROLES = roles(REGISTRY)
COMPRESS = ROLES.chain  # what `eib compress` runs


@contextlib.contextmanager
def registered(stage: Stage):
    """The registry with `stage` added for the duration (tests; a plugin would add its stage at import)."""
    global ORDER, ROLES, COMPRESS
    saved = (dict(REGISTRY), ORDER, ROLES, COMPRESS)
    REGISTRY[stage.name] = stage
    try:
        ORDER, ROLES = ordered(REGISTRY), roles(REGISTRY)
        COMPRESS = ROLES.chain
        yield REGISTRY
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved[0])
        ORDER, ROLES, COMPRESS = saved[1:]
