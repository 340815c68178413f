"""Per-operator time on the device, staged beside eib_device.py (stdlib only; the runtime is passed in).

    calls = profile_onnxruntime(ort, model_path, threads, feeds, runs)    # onnxruntime's session profiling
    calls = profile_tvm(tvm, machine, main_args, runs)                    # the Relax VM's call instrument
    calls = profile_openvino(ov, model_path, threads, feeds, runs)        # OpenVINO's per-node perf counters
    calls = profile(rt, runtime, opts, threads, ids, mask, handle)       # the runner's entry: one of the three

Each returns one profile: `calls`, the operators of one inference in the order they ran (name, kind of operator,
argument shapes, mean microseconds per inference), `runs` profiled, `wall_ms` (the profiled inferences' own
times, for the overhead), `plain_ms` (the median of as many unprofiled inferences, each run right before a
profiled one, so the profile's sum is held against the machine as it was during the profile: a load that comes
and goes between the timed pass and this one once put TVM's sum at 1.64 x the earlier p50) and
`overhead_us_per_call` (what the profiler adds to each call, estimated as the cheapest call's median time and
already subtracted from `us`). The profiled pass runs after the timed pass, so the model's latency numbers never include
the profiler.
"""

import json
import os
import time


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def _timed(fn, *args):
    """Milliseconds one call of fn takes."""
    t = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - t) / 1e6


def _less_cheapest(calls, spans, per):
    """Each node's mean time per inference (its summed spans over `per`) less the profiler's own cost per call: a
    profiler that records whole microseconds and adds its cost to each node shows the cheapest node's typical time
    (a Gather of one scalar, really well under a microsecond) as that cost. Returns the cost."""
    overhead = min((_median(v) for v in spans.values()), default=0)
    for name, c in calls.items():
        c["us"] = max(0.0, sum(spans[name]) / per - overhead)
    return float(overhead)


def _ort_session(ort, model, threads, profile):
    """The profiled session, or the plain one beside it (whose pool does not spin: it would take the cores from the
    profiled inference that follows each of its own)."""
    so = ort.SessionOptions()
    if not profile:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = profile
    so.profile_file_prefix = os.path.join(os.getcwd(), "ort-profile")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def profile_onnxruntime(ort, model, threads, feeds, runs):
    """A second session with profiling on; per-node `_kernel_time` events summed per node over `runs`."""
    sess = _ort_session(ort, model, threads, True)
    for _ in range(5):
        sess.run(["logits"], feeds)
    trace = sess.end_profiling()  # warm-up events go to the first file; a new session starts a clean trace
    os.unlink(trace)
    sess, plain_sess = _ort_session(ort, model, threads, True), _ort_session(ort, model, threads, False)
    plain_sess.run(["logits"], feeds)
    plain = []
    for _ in range(runs):
        plain.append(_timed(plain_sess.run, ["logits"], feeds))
        sess.run(["logits"], feeds)
    trace = sess.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.unlink(trace)
    calls, spans, wall = {}, {}, []
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            wall.append(e["dur"] / 1000.0)
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name, args = e["name"][: -len("_kernel_time")], e.get("args", {})
        if name not in calls:
            calls[name] = {"name": name, "op": args.get("op_name", ""),
                           "shapes": [next(iter(s.values())) for s in args.get("input_type_shape", [])]}
        spans.setdefault(name, []).append(e["dur"])
    overhead = _less_cheapest(calls, spans, max(1, len(wall)))
    return {"tool": "onnxruntime session profiling", "runs": len(wall), "calls": list(calls.values()),
            "wall_ms": _median(wall), "plain_ms": _median(plain), "overhead_us_per_call": overhead}


def profile_tvm(tvm, machine, args, runs):
    """The VM calls a Python function before and after every call (kernel or builtin); the time between is the
    call's. The cheapest call of an inference (a builtin that does nothing), its median over the runs, is taken as
    the instrument's own cost per call and subtracted from every call, as for the other runtimes (its fastest run
    instead, 0.48 against 0.85 us here, left ~0.4 us a call in the sum: ~0.16 ms over 442 calls an inference)."""
    named, spans, stack = [], [], []

    def instrument(func, symbol, before, ret, *call_args):
        if not before:
            spans.append(time.perf_counter_ns() - stack.pop())
        elif naming:
            named.append((symbol, [list(a.shape) for a in call_args if hasattr(a, "shape")]))
        if before:
            stack.append(time.perf_counter_ns())
        return 0

    naming = True
    machine.set_instrument(instrument)
    main = machine["main"]
    main(*args)  # the first instrumented inference names the calls (their shapes read once, outside the timed runs)
    naming = False
    per_run = len(named)
    spans.clear()
    wall, plain = [], []
    for _ in range(runs):
        machine.set_instrument(None)
        plain.append(_timed(main, *args))
        machine.set_instrument(instrument)
        wall.append(_timed(main, *args))
    machine.set_instrument(None)
    if not per_run or len(spans) != per_run * runs:
        return {"tool": "tvm relax vm instrument", "error": "the calls of an inference changed between runs"}
    # keyed by position in the inference: one kernel may be called several times
    calls = {i: {"name": sym, "op": sym, "shapes": shp} for i, (sym, shp) in enumerate(named)}
    overhead = _less_cheapest(calls, {i: [ns / 1000.0 for ns in spans[i::per_run]] for i in calls}, runs)
    return {"tool": "tvm relax vm instrument", "runs": runs, "calls": list(calls.values()), "wall_ms": _median(wall),
            "plain_ms": _median(plain), "overhead_us_per_call": overhead}


def profile_openvino(ov, model, threads, feeds, runs):
    """A second compiled model with PERF_COUNT on; each executed node's real time summed over `runs` (OpenVINO
    names nodes after the ONNX nodes they came from; `op` is the kernel it ran, e.g. brgemm_avx512_I8)."""
    core, config = ov.Core(), {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(model, "CPU", {**config, "PERF_COUNT": "YES"}).create_infer_request()
    plain_request = core.compile_model(model, "CPU", config).create_infer_request()
    for _ in range(5):
        request.infer(feeds)
        plain_request.infer(feeds)
    calls, spans, wall, plain = {}, {}, [], []
    for _ in range(runs):
        plain.append(_timed(plain_request.infer, feeds))
        wall.append(_timed(request.infer, feeds))
        for p in request.profiling_info:
            if str(p.status).endswith("EXECUTED"):
                calls.setdefault(p.node_name, {"name": p.node_name, "op": f"{p.node_type} ({p.exec_type})", "shapes": []})
                spans.setdefault(p.node_name, []).append(p.real_time.total_seconds() * 1e6)
    overhead = _less_cheapest(calls, spans, runs)
    return {"tool": "openvino perf counters", "runs": runs, "calls": list(calls.values()), "wall_ms": _median(wall),
            "plain_ms": _median(plain), "overhead_us_per_call": overhead}


def profile(rt, runtime, o, threads, ids, mask, handle):
    """Per-operator times of one inference on the first input row, after the timed pass (`o["profile"]` runs);
    `rt` is the runtime's module, `handle` the runner's loaded model (TVM's VM is reused)."""
    runs = int(o["profile"])
    if runtime == "tvm":
        dev = rt.cpu()
        return profile_tvm(rt, handle, (rt.runtime.tensor(ids[:1], dev), rt.runtime.tensor(mask[:1], dev)), runs)
    if runtime == "openvino":
        return profile_openvino(rt, o["model"], threads, [ids[:1], mask[:1]], runs)
    return profile_onnxruntime(rt, o["model"], threads, {"input_ids": ids[:1], "attention_mask": mask[:1]}, runs)
