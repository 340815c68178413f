"""Every stage the graph can hold, once: its function, input and output records, CPUs, whether it
needs a device, the measurement row it contributes and the folders it names (they travel).

    from harness.stages.registry import REGISTRY, ORDER
    REGISTRY["student"].cpus, REGISTRY["measure"].device, REGISTRY["artifact"].output   # 1, True, ArtifactRecord

The scheduler, graph, pipeline and reports ask this table instead of comparing stage names.
"""

from pathlib import Path

from eibert.stages import ArtifactRecord, ImportanceRecord, StudentRecord, VocabRecord
from harness.stages import device, model
from harness.stages.base import STAGES, Stage
from harness.stages.records import BuildRecord, MeasureRecord, TeacherRecord

REGISTRY: dict[str, Stage] = {s.name: s for s in (
    Stage("teacher", model.teacher, (), TeacherRecord, cpus="all", row=model.teacher_row, paths=lambda o: [o["model_dir"]]),
    Stage("importance", model.importance, ("teacher",), ImportanceRecord, cpus="all", paths=lambda o: [o["dir"]]),
    Stage("vocab", model.vocab, ("teacher", "importance"), VocabRecord, paths=lambda o: [o["dir"]]),
    Stage("student", model.student, ("teacher", "vocab"), StudentRecord, paths=lambda o: [o["dir"], o["vocab"]["dir"]]),
    Stage("artifact", model.artifact, ("teacher", "student"), ArtifactRecord, row=model.artifact_row,
          paths=lambda o: [o["artifact_dir"]]),
    Stage("build", device.build, ("artifact",), BuildRecord, paths=lambda o: [str(Path(o["lib"]).parent)]),
    Stage("measure", device.measure, ("artifact", "build", "teacher"), MeasureRecord, device=True, row=device.measure_row),
)}

ORDER = STAGES
assert tuple(REGISTRY) == ORDER, "the registry lists every stage of harness.stages.base.STAGES, in order"
COMPRESS = ORDER[: ORDER.index("artifact") + 1]  # what `eib compress` runs
