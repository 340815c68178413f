#!/usr/bin/env python3
"""The on-device side of the agent: one stdlib script (numpy and the runtime only for `run`).

    python3 eib_device.py probe
    python3 eib_device.py prepare WORKDIR RUN_ID LEASE_S TOKEN
    python3 eib_device.py adopt WORKDIR RUN_ID NAME SHA256     # verify an upload, move it into blobs/, link it
    python3 eib_device.py link WORKDIR RUN_ID NAME SHA256      # reuse a verified blob: exit 3 when absent
    python3 eib_device.py run WORKDIR RUN_ID --runtime tvm --model model.so --model-sha SHA --inputs inputs.npz ...
    python3 eib_device.py cleanup WORKDIR TOKEN [RUN_ID ...]   # kill and remove those runs, and expired ones

Layout of WORKDIR: blobs/<sha256><suffix> (verified uploads, shared by runs) and runs/<RUN_ID>/ (links to blobs,
the lease, the owner token, the pid, partial uploads). A run directory is removed when its run ends, by
`cleanup`, or by any later `prepare` once its lease has expired, so a crashed host leaves nothing behind
for long. Every argument arrives as its own argv element: nothing here passes through a shell.

The work dir is ours alone: `~` is expanded here, the path must be absolute, it is created 0700 and
refused when another user owns it or others may write to it. Cleanup touches only run folders whose
`owner` file holds the host's token, and signals only a process this script started there whose
identity (pid and start time) still matches. `run` loads private copies of the model and inputs,
verified by sha256 after copying, so a blob swapped after its check is refused, never loaded.
"""

import hashlib
import json
import os
import platform
import shutil
import signal
import sys
import time

EXIT_MISSING = 3
EXIT_WORKDIR = 5
EXIT_INTEGRITY = 4


def _runs(workdir):
    return os.path.join(workdir, "runs")


def _fail(code, **msg):
    print(json.dumps(msg))
    sys.exit(code)


def own_workdir(path):
    """The work dir, created 0700 and checked to be this user's alone (see module doc)."""
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        _fail(EXIT_WORKDIR, error="workdir must be an absolute path (or start with ~)", workdir=path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        _fail(EXIT_WORKDIR, error="workdir is not a directory", workdir=path)
    if st.st_uid != os.getuid():
        _fail(EXIT_WORKDIR, error=f"workdir is owned by uid {st.st_uid}, not by this user ({os.getuid()})", workdir=path)
    if st.st_mode & 0o022:
        _fail(EXIT_WORKDIR, error=f"workdir is writable by group or others (mode {oct(st.st_mode & 0o777)}); chmod 700 it",
              workdir=path)
    for sub in ("blobs", "runs"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    return path


def _start_time(pid):
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, a process's identity."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[-1].split()[19] if ")" in stat else ""


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _ours(d, token):
    return bool(token) and _read(os.path.join(d, "owner")) == token and not os.path.islink(d)


def _remove_run(workdir, run_id, token):
    """Kill what this script started in the run (if it is still that process) and remove the folder; a
    folder another host (or user) made is left alone."""
    d = os.path.join(_runs(workdir), run_id)
    if os.path.basename(run_id) != run_id or not _ours(d, token):
        return
    pid, _, started = _read(os.path.join(d, "pid")).partition(" ")
    if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)) and started and _start_time(int(pid)) == started:
        try:
            os.killpg(int(pid), signal.SIGKILL)  # the runner made itself a group leader
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


def _expire(workdir, token):
    now = time.time()
    for run_id in os.listdir(_runs(workdir)) if os.path.isdir(_runs(workdir)) else []:
        try:
            deadline = float(_read(os.path.join(_runs(workdir), run_id, "lease"), "0") or 0)
        except ValueError:
            deadline = 0
        if deadline < now:
            _remove_run(workdir, run_id, token)


def _blob(workdir, name, sha):
    # The suffix stays: TVM's load_module picks the loader by extension, after resolving the link.
    return os.path.join(workdir, "blobs", sha + os.path.splitext(name)[1])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cmd_probe(_args):
    facts = {"hostname": platform.node(), "machine": platform.machine(), "system": platform.system(),
             "kernel": platform.release(), "python": platform.python_version(), "cores": os.cpu_count()}
    cpuinfo = _read("/proc/cpuinfo")
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and "cpu_model" not in facts:
            facts["cpu_model"] = value.strip()
        elif key == "cpu part" and "cpu_part" not in facts:
            facts["cpu_part"] = value.strip()
        elif key in ("flags", "features") and "cpu_flags" not in facts:  # what kernels are chosen by, never the model name
            facts["cpu_flags"] = sorted(set(value.split()))
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith(("MemTotal:", "MemAvailable:")):
            facts["mem_total_bytes" if line.startswith("MemTotal") else "mem_available_bytes"] = int(line.split()[1]) * 1024
    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/"
    facts["governor"] = _read(cpufreq + "scaling_governor") or None
    cur, top = _read(cpufreq + "scaling_cur_freq"), _read(cpufreq + "cpuinfo_max_freq")
    facts["freq_khz"] = int(cur) if cur.isdigit() else None
    facts["max_freq_khz"] = int(top) if top.isdigit() else None
    temps = []
    base = "/sys/class/thermal"
    for zone in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        t = _read(os.path.join(base, zone, "temp"))
        if t.lstrip("-").isdigit():
            temps.append(int(t) / 1000.0)
    facts["temperature_c"] = max(temps) if temps else None
    versions = {}
    try:
        from importlib import metadata
        for dist in ("numpy", "onnxruntime", "apache-tvm", "apache-tvm-ffi", "openvino"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
    except ImportError:
        pass
    facts["versions"] = versions
    facts["runtimes"] = [r for r, d in (("onnxruntime", "onnxruntime"), ("tvm", "apache-tvm"), ("openvino", "openvino"))
                         if versions.get(d)]
    facts["time_v"] = os.path.exists("/usr/bin/time")
    print(json.dumps(facts))


def cmd_prepare(args):
    workdir, run_id, lease_s, token = own_workdir(args[0]), args[1], float(args[2]), args[3]
    _expire(workdir, token)
    d = os.path.join(_runs(workdir), run_id)
    os.makedirs(d, mode=0o700)
    with open(os.path.join(d, "owner"), "w") as f:
        f.write(token)
    os.makedirs(os.path.join(d, "upload"), mode=0o700)
    with open(os.path.join(d, "lease"), "w") as f:
        f.write(str(time.time() + lease_s))
    print(json.dumps({"run_dir": os.path.abspath(d), "workdir": workdir}))


def cmd_adopt(args):
    workdir, run_id, name, want = own_workdir(args[0]), args[1], args[2], args[3]
    d = os.path.join(_runs(workdir), run_id)
    part = os.path.join(d, "upload", name)
    got = sha256(part)
    if got != want:
        os.unlink(part)
        _fail(EXIT_INTEGRITY, error="sha256 mismatch", name=name, expected=want, actual=got)
    blob = _blob(workdir, name, want)
    os.replace(part, blob)
    os.symlink(os.path.abspath(blob), os.path.join(d, name))
    print(json.dumps({"name": name, "sha256": got}))


def cmd_link(args):
    workdir, run_id, name, want = own_workdir(args[0]), args[1], args[2], args[3]
    blob = _blob(workdir, name, want)
    if not os.path.isfile(blob) or sha256(blob) != want:  # re-verified: a blob may rot or be tampered with
        if os.path.exists(blob):
            os.unlink(blob)
        sys.exit(EXIT_MISSING)
    os.symlink(os.path.abspath(blob), os.path.join(_runs(workdir), run_id, name))


def cmd_cleanup(args):
    workdir, token = own_workdir(args[0]), args[1]
    for run_id in args[2:]:
        _remove_run(workdir, run_id, token)
    _expire(workdir, token)
    print(json.dumps({"left": sorted(os.listdir(_runs(workdir)))}))


def _private_copy(d, name, want):
    """Copy a linked blob into the run folder (0600) and verify the copy: what is loaded is what was checked."""
    base, ext = os.path.splitext(name)
    dst = os.path.join(d, ".private-" + base + ext)  # TVM picks its loader by the suffix
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, open(os.path.join(d, name), "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
    got = sha256(dst)
    if got != want:
        os.unlink(dst)
        _fail(EXIT_INTEGRITY, error="sha256 mismatch at load: the blob changed after it was verified", name=name, expected=want,
              actual=got)
    return dst


def _rss(field):
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def _opts(argv):
    opts = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if not key.startswith("--") or i + 1 >= len(argv):
            raise SystemExit("bad option: " + key)
        opts[key[2:].replace("-", "_")] = argv[i + 1]
        i += 2
    return opts


def cmd_run(args):
    o, threads = _enter_run(args)
    runtime = o["runtime"]
    t0 = time.perf_counter()
    import numpy as np

    rt, version = _import_runtime(runtime, threads)
    import_s = time.perf_counter() - t0
    rss_runtime = _rss("VmRSS")
    data = np.load(o["inputs"])
    ids, mask = data["input_ids"], data["attention_mask"]
    t0 = time.perf_counter()
    infer_arrays, handle = _load(rt, runtime, o["model"], threads)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss("VmRSS")

    def infer(i):
        return infer_arrays(ids[i : i + 1], mask[i : i + 1])

    n = len(ids)
    for k in range(int(o.get("warmup", "10"))):
        infer(k % n)
    rss_warm = _rss("VmRSS")
    min_count, min_s, max_s = (int(o.get("min_count", "100")), float(o.get("min_duration_s", "5")),
                               float(o.get("max_duration_s", "60")))
    samples, duration_s = _sample(infer, n, min_count, min_s, max_s)
    logits = [infer(i)[0].tolist() for i in range(n)]
    peak = _rss("VmHWM")  # the model's peak: the end-to-end and profiled passes below load more (a tokenizer, a profiler)
    e2e = _helper("textpass").end_to_end(o, np, infer_arrays, ids.shape[1], min_count, min_s, max_s) if o.get("texts") else None
    profile = _helper("opprofile").profile(rt, runtime, o, threads, ids, mask, handle) if o.get("profile") else None
    chosen = _openvino_precisions(handle) if runtime == "openvino" else None
    print(json.dumps({
        **({"openvino": chosen} if chosen else {}), "runtime": runtime, "runtime_version": version, "threads": threads,
        "import_s": import_s, "load_s": load_s,
        "rss_runtime_bytes": rss_runtime, "rss_loaded_bytes": rss_loaded, "rss_warm_bytes": rss_warm, "peak_rss_bytes": peak,
        "peak_rss_end_bytes": _rss("VmHWM"),
        "latencies_ns": samples, "duration_s": duration_s, "min_count": min_count, "min_duration_s": min_s,
        "min_met": len(samples) >= min_count and duration_s >= min_s,
        "logits": logits, **({"end_to_end": e2e} if e2e else {}), **({"profile": profile} if profile else {}),
    }))


def _enter_run(args):
    """Into the run folder, in a process group of our own (the host kills the group on timeout), the pid recorded,
    private verified copies of the model and inputs: (options, threads)."""
    workdir, run_id = own_workdir(args[0]), args[1]
    o = _opts(args[2:])
    d = os.path.join(_runs(workdir), run_id)
    os.chdir(d)
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    with open("pid", "w") as f:
        f.write(f"{os.getpid()} {_start_time(os.getpid())}")
    for key in ("model", "inputs"):
        if o.get(key + "_sha"):
            o[key] = _private_copy(d, o[key], o.pop(key + "_sha"))
    return o, int(o.get("threads", "0")) or (os.cpu_count() or 1)


def _import_runtime(runtime, threads):
    """(module, version) of the runtime."""
    if runtime == "tvm":
        os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # runtime only: a third of the import time and memory
        os.environ["TVM_NUM_THREADS"] = str(threads)
        # tvm_ffi imports torch whenever it is installed (DLPack interop) and the runner needs none of it:
        # on a host with torch that was ~200 MiB of the TVM runner's ~300 MiB
        sys.modules.setdefault("torch", None)
        import tvm
        import tvm.runtime.vm  # noqa: F401  (the VirtualMachine of _load)

        return tvm, tvm.__version__
    if runtime == "openvino":
        import openvino as ov

        return ov, ov.__version__
    import onnxruntime as ort

    return ort, ort.__version__


def _load(rt, runtime, model, threads):
    """The model loaded: (infer_arrays(ids, mask) -> logits, handle: TVM's VM, OpenVINO's compiled model or the
    onnxruntime session)."""
    if runtime == "tvm":
        dev = rt.cpu()
        machine = rt.runtime.vm.VirtualMachine(rt.runtime.load_module(model), dev)
        main = machine["main"]

        def infer_tvm(a, m):
            out = main(rt.runtime.tensor(a, dev), rt.runtime.tensor(m, dev))
            return (out if hasattr(out, "numpy") else out[0]).numpy()

        return infer_tvm, machine
    if runtime == "openvino":
        compiled = rt.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"})
        request, out0 = compiled.create_infer_request(), compiled.output(0)
        return (lambda a, m: request.infer([a, m])[out0].copy()), compiled
    so = rt.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = rt.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return (lambda a, m: sess.run(["logits"], {"input_ids": a, "attention_mask": m})[0]), sess


def _sample(infer, n, min_count, min_s, max_s):
    """Single-row inferences, cycling over the n rows, until at least min_count and min_s seconds (or max_s
    seconds): (latencies in ns, seconds spent)."""
    samples = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if (len(samples) >= min_count and elapsed >= min_s) or elapsed >= max_s:
            break
        i = len(samples) % n
        t = time.perf_counter_ns()
        infer(i)
        samples.append(time.perf_counter_ns() - t)
    return samples, time.perf_counter() - start


def _openvino_precisions(compiled):
    """What OpenVINO's CPU plugin chose: the inference precision, threads, and the precision each kind of layer
    runs in (from the compiled model's runtime graph: `u8`/`i8` on the matrix products is the integer path)."""
    kinds = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        if layer in ("FullyConnected", "MatMul", "Convolution", "Softmax", "Eltwise", "Subgraph"):
            kinds.setdefault(layer, {}).setdefault(prec, 0)
            kinds[layer][prec] += 1
    return {"inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "hint": str(compiled.get_property("PERFORMANCE_HINT")),
            "layers": kinds}


def _helper(name):
    """A module staged beside this script in the run folder (textpass, wordpiece, opprofile)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    return __import__(name)


COMMANDS = {"probe": cmd_probe, "prepare": cmd_prepare, "adopt": cmd_adopt, "link": cmd_link, "cleanup": cmd_cleanup,
            "run": cmd_run}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit("usage: eib_device.py {" + ",".join(COMMANDS) + "} ...")
    COMMANDS[sys.argv[1]](sys.argv[2:])
