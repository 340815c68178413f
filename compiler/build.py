"""TVM builds: an exported program (.pt2, batch 1, fixed length) -> Relax -> `tvm.compile` for a named
target -> a shared library; ARM libraries are linked with Debian's `aarch64-linux-gnu-gcc`.

    from compiler.build import build
    rec = build("model-s64.pt2", "arm64-cortex-a72", cache_dir=".eib-cache")
    rec["lib"], rec["lib_bytes"], rec["build_s"], rec["cache_hit"]

This is the one module that imports TVM, and only in a child process (`python -m compiler.build`)
run with a timeout: TVM's API moves, its builds can hang or crash, and neither may take the caller
down. Builds are cached by (program sha256, target, TVM and TVM-FFI versions, options, tuning
database). With `trials > 0`, MetaSchedule tunes into a database shared by every program with the same
shapes; the record says how many tuning tasks were new to it. The child loads the program with
`torch.export.load` because TVM's PyTorch frontend takes an ExportedProgram: the only torch use in
`devices`, and the reason the import-wall test names this module.
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from compiler.disasm import kernels_verified
from devices.cpufeatures import PATH_INSTRUCTION, host_flags, int8_path, llvm_features
from devices.targets import TARGETS
from eibutil import atomic_write_json, sha256_file
from eibutil.cache import Cache
from eibutil.files import content_key

BUILD_VERSION = 5  # bump when the build recipe changes (3: integer path chosen by CPU feature flags; 4: ARM sdot/smull kernels;
# 5: the record names INT4 layers and their path)


class BuildError(RuntimeError):
    def __init__(self, message: str, kind: str = "build-failed", log: str = ""):
        super().__init__(message)
        self.kind, self.log = kind, log


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _host_cpu_id() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def db_digest(db_dir: Path | None) -> str | None:
    """sha256 over a tuning database's files (None when there is none)."""
    if not db_dir or not Path(db_dir).is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(Path(db_dir).glob("database_*.json")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def build(program: str | Path, target: str, cache_dir: str | Path, *, trials: int = 0, db_dir: str | Path | None = None,
          fast_math: bool = True, num_cores: int | None = None, timeout_s: float = 1800, log=None, int8: bool = True) -> dict:
    """Build (or fetch from the cache) the library for `program` on `target`; returns the build record.

    Raises `BuildError` (kind `build-failed` or `build-timeout`) with the child's log.
    """
    if target not in TARGETS:
        raise BuildError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)}", kind="bad-target")
    spec = TARGETS[target]
    cc = spec.cc
    if cc and not shutil.which(cc):
        raise BuildError(f"{cc} not found: install gcc-aarch64-linux-gnu to build for {target}", kind="missing-toolchain")
    num_cores = num_cores or os.cpu_count() or 1
    # the local CPU's features come from its flags (never its model name); a named target's are its own
    features = llvm_features(host_flags(), spec.arch) if spec.mcpu == "host" else ()
    db_dir = Path(db_dir).resolve() if (trials and db_dir) else None
    key_src = {
        "program": sha256_file(program), "target": spec.tvm_target(num_cores if trials else None, features=features),
        "host_cpu": _host_cpu_id() if spec.mcpu == "host" else None, "tvm": _version("apache-tvm"),
        "tvm_ffi": _version("apache-tvm-ffi"), "fast_math": fast_math, "trials": trials, **({"int8": True} if int8 else {}),
        "db": str(db_dir) if db_dir else None, "recipe": BUILD_VERSION,
        # the integer kernels' code: a change to them is a new build even where the recipe number was not bumped
        **({"kernels": sha256_file(Path(__file__).with_name("int8.py"))[:16]} if int8 else {}),
    }
    key = content_key(key_src)
    out = Cache(cache_dir).area("tvm") / target / key
    if (out / "build.json").exists():
        rec = json.loads((out / "build.json").read_text())
        return {**rec, "lib": str(out / "model.so"), "cache_hit": True}
    tmp = out.with_name(f".{key}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    int4 = int4_facts(program)
    job = {"program": str(Path(program).resolve()), "target": target, "num_cores": num_cores, "trials": trials,
           "db_dir": str(db_dir) if db_dir else None, "fast_math": fast_math, "out": str(tmp / "model.so"), "cc": cc,
           "int8": int8, "int4_float": int4.get("int4_path") in ("float", "int8+float"),
           "features": list(features)}
    env = {**os.environ, "TVM_NUM_THREADS": str(num_cores)}
    t0 = time.perf_counter()
    log_path = tmp / "build.log"
    try:
        with open(log_path, "w") as logf:
            p = subprocess.run([sys.executable, "-m", "compiler.build", json.dumps(job)], stdout=subprocess.PIPE,
                               stderr=logf, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        text = log_path.read_text()[-4000:]
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"TVM build for {target} ran past {timeout_s:g} s", kind="build-timeout", log=text) from None
    if p.returncode != 0:
        text = log_path.read_text()[-4000:]
        shutil.rmtree(tmp, ignore_errors=True)
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or [f"exit {p.returncode}"]
        raise BuildError(f"TVM build for {target} failed: {last[0][:300]}", log=text)
    child = json.loads(p.stdout.strip().splitlines()[-1])
    if child.get("int8_path") in PATH_INSTRUCTION:  # the kernels really execute their path's instruction
        child["int8_verified"] = kernels_verified(str(tmp / "model.so"), child["int8_layers"],
                                                  PATH_INSTRUCTION[child["int8_path"]], spec.arch)
    rec = {**child, **int4, "key": key, "key_src": key_src, "build_s": round(time.perf_counter() - t0, 2),
           "lib_bytes": (tmp / "model.so").stat().st_size, "lib_sha256": sha256_file(tmp / "model.so"),
           "db_sha256": db_digest(db_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(tmp / "build.json", rec)
    try:
        os.rename(tmp, out)
    except OSError:  # built concurrently by another process: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return {**rec, "lib": str(out / "model.so"), "cache_hit": False}


# ---------------------------------------------------------------------------------------------
# The child: everything below imports TVM.

def _fast_gelu(mod):
    """relax.nn.gelu -> x * 0.5 * (1 + fast_erf(x / sqrt 2)): scalar `erff` is the largest untunable cost."""
    import tvm
    from tvm import relax, topi

    def te(x):
        c = lambda v: tvm.tirx.const(v, x.dtype)
        return topi.multiply(topi.multiply(x, c(0.5)), topi.add(c(1.0), topi.fast_erf(topi.multiply(x, c(0.7071067811865476)))))

    @relax.expr_functor.mutator
    class Mutator(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.gelu":
                return self.builder_.call_te(te, call.args[0], primfunc_name_hint="fast_gelu")
            return call

    m = Mutator(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            m.builder_.update_func(gv, m.visit_expr(func))
    return relax.transform.FastMathTransform()(m.builder_.get())


def _persistent_builder_pool():
    """MetaSchedule's LocalBuilder starts a fresh worker pool each round (~19 s of imports each): keep one."""
    import tvm.s_tir.meta_schedule.builder.local_builder as lb

    orig, cache = lb.PopenPoolExecutor, {}

    class Pool:
        def __init__(self, max_workers=None, timeout=None, initializer=None, **kw):
            key = (max_workers, timeout)
            if key not in cache:
                cache[key] = orig(max_workers=max_workers, timeout=timeout, initializer=initializer, **kw)
            self._p = cache[key]

        def map_with_error_catching(self, *a, **k):
            return self._p.map_with_error_catching(*a, **k)

        def submit(self, *a, **k):
            return self._p.submit(*a, **k)

        def shutdown(self, *a, **k):
            pass

    lb.PopenPoolExecutor = Pool


def integer_dense(mod, tdict: dict, arch: str, requested: bool):
    """(module, {int8_path, int8_reason, int8_layers}): the INT8 dense layers on the integer kernels the target's
    features (`mattr`, from CPU flags) allow (devices.cpufeatures.int8_path: vpdpbusd, sdot, smull), else the
    dequantized float graph."""
    if not requested:
        return mod, {"int8_path": "float", "int8_reason": "integer compute not requested (measure.int8_compute: false)",
                     "int8_layers": []}
    path, why = int8_path(tdict.get("mattr", ()), arch)
    layers: list = []
    if path != "float":
        from compiler.int8 import rewrite_int8_dense

        mod, layers = rewrite_int8_dense(mod, path)
    return mod, {"int8_path": path, "int8_reason": why, "int8_layers": layers}


def int4_facts(program: str | Path) -> dict:
    """The program's INT4 layers (eibert.deploy.export_program's note beside it): those with one step a row reach
    TVM as int8 values and run on the INT8 layers' path; block-wise ones are unpacked at build time into fp32
    constants and run in float (no 4-bit kernels in this TVM)."""
    side = Path(program).with_suffix(".json")
    note = json.loads(side.read_text()) if side.is_file() else {}
    names, as_int8, flt = note.get("int4_layers", []), note.get("int4_as_int8", []), note.get("int4_float", [])
    if not names:
        return {"int4_layers": []}
    path = "float" if not as_int8 else ("int8" if not flt else "int8+float")
    return {"int4_layers": names, "int4_as_int8": as_int8, "int4_path": path,
            "int4_reason": f"{len(as_int8)} INT4 layer(s) with a step per row as int8 values on the INT8 path (int8_path); "
                           f"{len(flt)} block-wise one(s) unpacked to fp32 constants at build time, run in float"}


def _child(job: dict) -> dict:
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    spec = TARGETS[job["target"]]
    host_cpu = str(tvm.target.codegen.llvm_get_system_cpu()) if spec.mcpu == "host" else None
    tdict = spec.tvm_target(job["num_cores"] if job["trials"] else None, host_cpu=host_cpu,
                            features=tuple(job.get("features", ())))
    target = tvm.target.Target(tdict)
    t0 = time.perf_counter()
    ep = torch.export.load(job["program"])
    mod = from_exported_program(ep, keep_params_as_input=False)
    import_s = time.perf_counter() - t0
    if job["fast_math"]:
        mod = _fast_gelu(mod)
    info: dict = {"target_dict": tdict, "import_s": round(import_s, 2), "tuned": bool(job["trials"]), "int8_layers": []}
    mod, int8_info = integer_dense(mod, tdict, spec.arch, bool(job.get("int8")))
    info.update(int8_info)
    if job.get("int4_float"):  # unpack block-wise INT4 weights once, at build time, not every call (the INT8
        mod = relax.transform.FoldConstant()(mod)  # layers are integer kernels by now, their inputs not constant)
    if job["trials"]:
        from tvm.s_tir import meta_schedule as ms

        _persistent_builder_pool()
        with target:
            # The zero pipeline folds constants: int8 weights become fp32 again (a bigger .so, same speed).
            mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
                                            relax.get_pipeline("zero")])(mod)
        db_dir = job["db_dir"]
        os.makedirs(db_dir, exist_ok=True)
        # the hand-scheduled INT8 kernels (compiler/int8.py) are not tuned
        tasks = [t for t in ms.relax_integration.extract_tasks(mod, target) if not t.task_name.startswith("int8_")]
        db = ms.database.JSONDatabase(work_dir=db_dir)
        # a task is new unless the database holds a measured record for it (a crashed tuning run can leave
        # workloads without records)
        new = [t.task_name for t in tasks if db.query_tuning_record(t.dispatched[0], target, t.task_name) is None]
        info.update(tasks=len(tasks), new_tasks=len(new), new_task_names=new[:50])
        t1 = time.perf_counter()
        if new:
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(extracted_tasks=tasks, work_dir=db_dir)
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=db_dir, max_trials_global=max(job["trials"], len(tasks)),
                # every task gets a first round before any gets a second: keep rounds small when trials are few
                num_trials_per_iter=max(4, min(16, job["trials"] // max(1, len(new)))),
                # a loaded CI machine compiles slowly
                builder=ms.builder.LocalBuilder(max_workers=job["num_cores"], timeout_sec=300),
                runner=ms.runner.LocalRunner(timeout_sec=30), database=db)
        info["tune_s"] = round(time.perf_counter() - t1, 2)
        with target:
            mod = relax.transform.MetaScheduleApplyDatabase(db_dir)(mod)
    t1 = time.perf_counter()
    ex = tvm.compile(mod, target=target)
    kwargs = {"cc": job["cc"]} if job["cc"] else {}
    ex.export_library(job["out"], **kwargs)
    info["compile_s"] = round(time.perf_counter() - t1, 2)
    return info


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
