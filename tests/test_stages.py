"""The stage registry and its records: every stage is listed once with its record type; records
round-trip through JSON; each default is defined once (eibert/devices settings equal the config's);
a device pinned to a Ray node asks for that node's resource."""

import dataclasses

import pytest

from harness.config import schema as C
from harness.stages.state import Payload


def _defaults(dc) -> dict:
    return {f.name: f.default for f in dataclasses.fields(dc) if f.default is not dataclasses.MISSING}


def _pairs():
    from eibert.augment import AugmentSettings
    from eibert.cached_stages import VocabSettings
    from eibert.distill import DistillSettings
    from eibert.quant import QuantSettings
    from eibert.selection import SelectionSettings
    from eibert.student import StudentSpec
    from harness.measure.run import MeasureSettings

    return [(StudentSpec, C.StudentConfig), (DistillSettings, C.DistillConfig), (QuantSettings, C.QuantConfig),
            (VocabSettings, C.VocabConfig), (AugmentSettings, C.AugmentConfig), (MeasureSettings, C.MeasureConfig),
            (SelectionSettings, C.SelectionConfig)]


# derived where unset: the student's positions follow task.max_seq_len when the config leaves them out
# and distill.qat (a switch in the config) becomes the quantization it trains with (eibert.qat.QatSettings as JSON)
DERIVED = {("StudentSpec", "max_positions"), ("DistillSettings", "qat")}


@pytest.mark.parametrize("settings, section", _pairs(), ids=lambda x: getattr(x, "__name__", ""))
def test_eibert_and_devices_defaults_equal_the_configs(settings, section):
    mine = _defaults(settings)
    theirs = {k: f.default for k, f in section.model_fields.items()}
    shared = sorted((set(mine) & set(theirs)) - {k for s, k in DERIVED if s == settings.__name__})
    assert shared
    norm = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    assert {k: norm(mine[k]) for k in shared} == {k: norm(theirs[k]) for k in shared}


def test_teacher_and_cli_defaults_equal_the_configs():
    from eibert.teacher import DEFAULT_HP
    from harness.cli.devices import MEASURE_DEFAULTS

    t = C.TeacherConfig()
    assert {k: v for k, v in DEFAULT_HP.items() if k in C.TeacherConfig.model_fields} == {k: getattr(t, k) for k in DEFAULT_HP
                                                                                      if k in C.TeacherConfig.model_fields}
    assert MEASURE_DEFAULTS == C.MeasureConfig()


def test_registry_lists_every_stage_with_a_record_type():
    from eibutil.records import Record
    from harness.stages.registry import ORDER, REGISTRY, ROLES

    assert ORDER == ("teacher", "importance", "vocab", "student", "artifact", "build", "measure")  # derived from the inputs
    for name, st in REGISTRY.items():
        assert issubclass(st.output, Record) and set(st.inputs) <= set(ORDER[: ORDER.index(name)]), name
    assert [n for n, s in REGISTRY.items() if s.device] == ["measure"]
    assert [n for n, s in REGISTRY.items() if s.row] == ["teacher", "artifact", "measure"]
    assert (ROLES.root, ROLES.model, ROLES.build, ROLES.measure) == ("teacher", "artifact", "build", "measure")


def test_records_round_trip_with_nested_records_and_extra_facts():
    from eibert.cached_stages import StudentRecord, VocabRecord

    rec = StudentRecord("k", "/c/student/k", VocabRecord("v", "/c/vocab/v", 300, 0.9, 0.01), 0.8, 12,
                        extra={"node_key": "n", "ray_node": "abc"})
    back = StudentRecord.from_json(rec.to_json())
    assert back == rec and isinstance(back.vocab, VocabRecord) and back.to_json()["ray_node"] == "abc"


def test_a_pinned_device_and_a_placed_stage_ask_for_their_nodes_resource():
    from types import SimpleNamespace

    from devices.inventory import DeviceSpec
    from harness.engine.graph import Node
    from harness.engine.scheduler import PIN, placement

    cfg = SimpleNamespace(cluster=C.ClusterConfig(resources={"student": "gpu-box"}))
    measure = Node("m", "measure", ["v"], [], Payload(cfg, device="pi"))
    assert placement(measure, DeviceSpec(transport="local", ray_resource="lab-a")) == {"lab-a": PIN}
    assert placement(measure, DeviceSpec(transport="local")) is None  # unpinned: anywhere
    assert placement(Node("s", "student", ["v"], [], Payload(cfg))) == {"gpu-box": PIN}
    from eibutil import ConfigError
    from harness.engine.pipeline import check_stage_names

    with pytest.raises(ConfigError, match="cluster.resources: unknown stage 'studnet'"):
        check_stage_names(C.ExperimentConfig(name="x", cluster={"resources": {"studnet": "x"}}), "c.yaml")
