"""CPU features from flags, never from CPU model names.

    from devices.cpufeatures import host_flags, llvm_features, int8_path
    flags = host_flags()                       # {"avx512_vnni", "avx2", ...} from /proc/cpuinfo
    llvm_features(flags, "x86_64")             # ("+avx512bw", "+avx512f", "+avx512vnni", ...): LLVM -mattr
    int8_path(("+avx512vnni",), "x86_64")      # ("vnni", "target has +avx512vnni")
    int8_path(("+dotprod", "+neon"), "aarch64")  # ("sdot", "target has +dotprod")

A kernel is chosen by what the target can execute: the `mattr` of its TVM target, which for the local
device is filled from this CPU's flags (`/proc/cpuinfo`) and for a remote device comes from its named
target (and the flags its probe returns, recorded beside the measurement). LLVM's CPU names (rocketlake,
znver4, ...) are never consulted: a list of names is always missing the next CPU.
"""

from pathlib import Path

# /proc/cpuinfo flag -> LLVM target feature, for the features our kernels and LLVM's code generation use
_X86 = {
    "avx2": "+avx2", "fma": "+fma", "f16c": "+f16c", "bmi2": "+bmi2",
    "avx512f": "+avx512f", "avx512bw": "+avx512bw", "avx512dq": "+avx512dq", "avx512vl": "+avx512vl", "avx512cd": "+avx512cd",
    "avx512_vnni": "+avx512vnni", "avx_vnni": "+avxvnni", "avx512_bf16": "+avx512bf16",
    "amx_tile": "+amx-tile", "amx_int8": "+amx-int8", "amx_bf16": "+amx-bf16",
}
_AARCH64 = {"asimd": "+neon", "asimddp": "+dotprod", "i8mm": "+i8mm", "fphp": "+fullfp16", "asimdhp": "+fullfp16"}


def parse_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (x86 `flags`, ARM `Features`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def host_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        return parse_flags(Path(path).read_text())
    except OSError:
        return set()


def llvm_features(flags, arch: str) -> tuple[str, ...]:
    """LLVM `mattr` entries for the flags this project's code generation cares about, sorted."""
    table = _X86 if arch == "x86_64" else _AARCH64 if arch == "aarch64" else {}
    return tuple(sorted({table[f] for f in flags if f in table}))


# int8 path -> the CPU flag (/proc/cpuinfo) its instructions need, and the instruction its kernels are built on
PATH_FLAG = {"vnni": "avx512_vnni", "sdot": "asimddp", "neon": "asimd"}
PATH_INSTRUCTION = {"vnni": "vpdpbusd", "sdot": "sdot", "neon": "smull"}


def int8_path(mattr, arch: str) -> tuple[str, str]:
    """(path, why) for the INT8 dense layers of a TVM build: "vnni" (x86 vpdpbusd kernels), "sdot" (aarch64
    dot product kernels), "neon" (aarch64 smull/saddlp widening multiply-accumulate kernels) or "float" (the
    dequantized graph)."""
    have = set(mattr or ())
    if arch == "x86_64":
        if "+avx512vnni" in have:
            return "vnni", "target has +avx512vnni"
        return "float", "target lacks +avx512vnni (no VNNI int8 dot product kernel for it)"
    if arch == "aarch64":
        if "+dotprod" in have:
            return "sdot", "target has +dotprod"
        if "+neon" in have:
            return "neon", "target has +neon but not +dotprod: smull/saddlp widening multiply-accumulate"
        return "float", "target lacks +neon: INT8 weights are dequantized to float"
    return "float", f"no int8 kernel for {arch}"

