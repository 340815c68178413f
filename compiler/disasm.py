"""Which functions of a built library execute a given instruction, read from its disassembly.

    from compiler.disasm import functions_using
    functions_using("model.so", "sdot", "aarch64")   # {"int8_dense_sdot_m64_n256_k256_compute_", ...}

It is how a build proves that its integer kernels run the instruction their path names (`vpdpbusd`,
`sdot`, `smull`) rather than a float fallback that LLVM chose: binutils' `objdump` for x86 libraries,
Debian's `aarch64-linux-gnu-objdump` (package binutils-aarch64-linux-gnu) for ARM ones.
"""

import shutil
import subprocess

OBJDUMP = {"x86_64": "objdump", "aarch64": "aarch64-linux-gnu-objdump"}


def functions_using(lib: str, instruction: str, arch: str) -> set[str] | None:
    """Names of the functions in `lib` whose code contains `instruction`; None when no disassembler is installed."""
    tool = shutil.which(OBJDUMP.get(arch, "objdump"))
    if tool is None:
        return None
    out = subprocess.run([tool, "-d", "--no-show-raw-insn", lib], capture_output=True, text=True, check=True).stdout
    found, current = set(), None
    for line in out.splitlines():
        if line.endswith(">:"):
            current = line.split("<", 1)[1][:-2]
        elif current and line.split("\t")[1:2] and line.split("\t")[1].split()[:1] == [instruction]:
            found.add(current)
    return found


def kernels_verified(lib: str, layers: list[dict], instruction: str, arch: str) -> dict:
    """{instruction, kernels, kernels_with, tool}: how many of the build's integer kernels contain `instruction`."""
    names = sorted({layer["kernel"] for layer in layers})
    funcs = functions_using(lib, instruction, arch)
    if funcs is None:
        return {"instruction": instruction, "kernels": len(names), "kernels_with": None, "tool": None}
    with_it = [n for n in names if any(f.startswith(n) for f in funcs)]
    return {"instruction": instruction, "kernels": len(names), "kernels_with": len(with_it), "tool": OBJDUMP.get(arch, "objdump")}
