"""Kernels are chosen by CPU feature flags, never by CPU model names (a list of names misses the next CPU)."""

from pathlib import Path

import pytest

from devices.cpufeatures import int8_path, llvm_features, parse_flags
from devices.targets import TargetSpec

ROOT = Path(__file__).resolve().parents[1]
# /proc/cpuinfo of a CPU LLVM calls "rocketlake" (the machine where a name list chose float)
ROCKETLAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: 11th Gen Intel(R) Core(TM) i7-11700K @ 3.60GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx_vnni amx_int8 amx_tile
"""
ARM_A76 = ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
           "dcpop asimddp\n")


def test_features_come_from_flags():
    flags = parse_flags(ROCKETLAKE)
    feats = llvm_features(flags, "x86_64")
    assert {"+avx512vnni", "+avx512bw", "+avxvnni", "+amx-int8"} <= set(feats)
    assert int8_path(feats, "x86_64") == ("vnni", "target has +avx512vnni")
    plain = llvm_features(parse_flags(ROCKETLAKE.replace(" avx512_vnni", "")), "x86_64")
    path, why = int8_path(plain, "x86_64")
    assert path == "float" and "+avx512vnni" in why
    a76 = llvm_features(parse_flags(ARM_A76), "aarch64")
    assert "+dotprod" in a76 and int8_path(a76, "aarch64") == ("sdot", "target has +dotprod")
    a72 = llvm_features(parse_flags(ARM_A76.replace(" asimddp", "")), "aarch64")
    assert int8_path(a72, "aarch64")[0] == "neon" and int8_path((), "aarch64")[0] == "float"
    assert parse_flags("processor\t: 0\n") == set()


def test_a_target_dict_carries_the_flag_features_whatever_its_cpu_name():
    spec = TargetSpec("x", "x86_64", "x86_64-linux-gnu", "host", ("+avx2",))
    t = spec.tvm_target(host_cpu="some-future-lake", features=llvm_features(parse_flags(ROCKETLAKE), "x86_64"))
    assert t["mcpu"] == "some-future-lake" and "+avx512vnni" in t["mattr"] and "+avx2" in t["mattr"]
    assert t["mattr"] == sorted(set(t["mattr"]))


@pytest.mark.slow
def test_a_vnni_target_under_an_unlisted_cpu_name_gets_the_vnni_kernels(tmp_path, shipped_dense):
    """The shipped model's dense layers go to the vpdpbusd kernels for `+avx512vnni` under CPU names that no list holds,
    and stay float without the flag (the decision the build child makes; compiling is covered by test_integer_format)."""
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    from compiler.build import integer_dense
    from eibert.deploy import export_program

    prog = tmp_path / "m.pt2"
    export_program(ROOT / "models/sst2-2mb", 64, prog)
    mod = from_exported_program(torch.export.load(str(prog)), keep_params_as_input=False)
    for cpu in ("rocketlake", "x86-64-v4", "a-cpu-no-list-has"):
        tdict = TargetSpec("t", "x86_64", "x86_64-linux-gnu",
                           "host").tvm_target(host_cpu=cpu, features=("+avx512bw", "+avx512f", "+avx512vnni"))
        _, info = integer_dense(mod, tdict, "x86_64", True)
        assert info["int8_path"] == "vnni" and len(info["int8_layers"]) == shipped_dense, (cpu, info["int8_reason"])
    tdict = TargetSpec("t", "x86_64", "x86_64-linux-gnu", "host").tvm_target(host_cpu="cascadelake", features=("+avx2",))
    _, info = integer_dense(mod, tdict, "x86_64", True)
    assert info["int8_path"] == "float" and info["int8_layers"] == [] and "+avx512vnni" in info["int8_reason"]


def test_a_remote_devices_flags_are_checked_against_the_builds_integer_path():
    from eibutil import UserError
    from harness.measure.run import check_device_flags

    vnni = {"machine": "x86_64", "cpu_flags": sorted(parse_flags(ROCKETLAKE))}
    plain = {"machine": "x86_64", "cpu_flags": ["avx2", "fma"]}
    with pytest.raises(UserError, match="no avx512_vnni"):
        check_device_flags("box", {"int8_path": "vnni", "target_dict": {"mcpu": "icelake-server"}}, plain)
    note = check_device_flags("box", {"int8_path": "float", "int8_reason": "target lacks +avx512vnni"}, vnni)
    assert "the device's CPU has avx512_vnni" in note["int8_reason"]
    assert check_device_flags("box", {"int8_path": "vnni"}, vnni) == {}
    # a probe without flags: nothing to check
    assert check_device_flags("old", {"int8_path": "vnni"}, {"machine": "x86_64"}) == {}
    a76 = {"machine": "aarch64", "cpu_flags": sorted(parse_flags(ARM_A76))}
    a72 = {"machine": "aarch64", "cpu_flags": sorted(parse_flags(ARM_A76.replace(" asimddp", "")))}
    with pytest.raises(UserError, match="no asimddp"):  # an sdot library on a Cortex-A72 would die on SIGILL
        check_device_flags("pi4", {"int8_path": "sdot", "target_dict": {"mcpu": "cortex-a76"}}, a72)
    assert check_device_flags("pi4", {"int8_path": "neon"}, a72) == {}
    note = check_device_flags("pi5", {"int8_path": "neon", "int8_reason": "target has +neon but not +dotprod"}, a76)
    assert "asimddp" in note["int8_reason"] and "sdot" in note["int8_reason"]
