"""The benchmark harness's pure parts (the suite itself runs in CI as `make bench-quick`)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, discover, tune  # noqa: E402


def _row(provider, ms, case="a", check="ok"):
    return {"provider": provider, "check": check, "median_ms": str(ms), "case": case,
            "dtype": "bf16", "layout": "nchw", "direction": "fwd"}


def test_tune_compares_backends_on_shared_rows_only():
    rows = [_row("triton", 2.0), _row("cuda", 1.0), _row("cuda", 0.001, case="only-cuda"),
            _row("triton", 1.0, case="b"), _row("cuda", 4.0, case="b"), _row("aten", 0.1)]
    scores = tune.fastest(rows)
    assert set(scores) == {"triton", "cuda"}
    assert abs(scores["triton"] - 2.0 ** 0.5) < 1e-12 and abs(scores["cuda"] - 2.0) < 1e-12


def test_tune_ignores_failed_checks():
    scores = tune.fastest([_row("cuda", 1.0, check="FAILED"), _row("triton", 3.0)])
    assert list(scores) == ["triton"] and abs(scores["triton"] - 3.0) < 1e-12


def test_every_op_has_a_bench_module():
    from pydense import _tuned

    assert {_tuned.MEASURED_AS.get(op, op) for op in _tuned.AUTO_BACKEND} <= set(discover())


def test_markdown_table_aligns_numbers():
    rows = [{c: None for c in common.COLUMNS} | {"case": "x", "median_ms": 1.23456, "provider": "cpu"}]
    table = common.markdown_table(rows).splitlines()
    assert table[0].startswith("| case") and "1.235" in table[2] and len({len(l) for l in table}) == 1


def test_model_benchmark_smoke(tmp_path):
    """The model benchmark harness runs end to end (quick: the basic context module, pydense vs eager) and its
    pydense inference matches eager."""
    from benchmarks import models

    rows = models.run(quick=True, device=models.torch.device("cpu"), wanted={"context_basic"})
    assert {(r["mode"], r["provider"]) for r in rows} == {(m, p) for m in ("infer", "train")
                                                         for p in ("pydense", "eager")}
    assert all(r["check"] in ("ok", "ran") and r["median_ms"] > 0 for r in rows)


def test_panoptic_quality_benchmark_smoke():
    """The PQ benchmark runs end to end on CPU (quick) and every pydense row agrees with the
    straightforward reference."""
    import torch

    from benchmarks import panoptic_quality

    rows = panoptic_quality.run(quick=True, device=torch.device("cpu"))
    providers = {(r["mode"], r["provider"]) for r in rows}
    assert {("per-image", "reference"), ("batched", "pydense-cpu"), ("per-image", "pydense-torch")} <= providers
    assert all(r["check"] in ("ok", "ran", "ref") for r in rows), rows
    assert all(r["images/s"] > 0 for r in rows)


def _result_rows(op, times, case="a", device="NVIDIA_H200"):
    """Rows as the harness writes them: ``times`` maps provider -> ms (None: a FAILED check)."""
    return [{"op": op, "device": device, "bytes": 1, "case": case, "dtype": "bf16",
             "layout": "channels_last", "direction": "fwd", "provider": p, "median_ms": ms,
             "check": "ok" if ms else "FAILED"} for p, ms in times.items()]


def test_tune_writes_the_tuned_file(tmp_path):
    """``python -m benchmarks.tune DIR`` rewrites AUTO_BACKEND's "cuda" entries from a GPU run's
    CSVs (the fastest passing backend; a backend with a failed check never wins; ops measured as
    another op follow it) and keeps everything else of the file."""
    from pydense import _tuned

    rows = (_result_rows("max_unpool2d", {"cuda": 1.0, "triton": 2.0, "aten": 0.5})
            + _result_rows("pixel_shuffle", {"cuda": 3.0, "triton": 2.0})
            + _result_rows("conv2d", {"cuda": 1.0, "triton": 2.0})
            + _result_rows("conv2d", {"cuda": None, "triton": 2.0}, case="b"))
    common.write_csv(str(tmp_path / "results" / "NVIDIA_H200" / "headline.csv"), rows)
    cpu_rows = _result_rows("max_pool2d", {"cpu": 1.0, "triton": 0.1}, device="cpu-x86_64")
    common.write_csv(str(tmp_path / "results" / "cpu-x86_64" / "max_pool2d.csv"), cpu_rows)
    target = tmp_path / "_tuned.py"
    target.write_text(open(_tuned.__file__).read())
    assert tune.main([str(tmp_path / "results"), "--out", str(target)]) == 0
    written = {}
    exec(target.read_text(), written)
    auto = written["AUTO_BACKEND"]
    assert auto["max_unpool2d"] == {"cuda": "cuda", "cpu": _tuned.AUTO_BACKEND["max_unpool2d"]["cpu"]}
    assert auto["pixel_shuffle"]["cuda"] == "triton" and auto["pixel_unshuffle"]["cuda"] == "triton"
    assert auto["conv2d"]["cuda"] == "triton"  # cuda failed a check
    unmeasured = set(_tuned.AUTO_BACKEND) - {"max_unpool2d", "pixel_shuffle", "pixel_unshuffle", "conv2d"}
    assert {op: auto[op] for op in unmeasured} == {op: _tuned.AUTO_BACKEND[op] for op in unmeasured}
    assert {op: e["cpu"] for op, e in auto.items()} == {op: e["cpu"] for op, e in _tuned.AUTO_BACKEND.items()}
    assert written["MEASURED_AS"] == _tuned.MEASURED_AS and written["__doc__"] == _tuned.__doc__
    again = tmp_path / "again.py"
    again.write_text(target.read_text())
    tune.main([str(tmp_path / "results"), "--out", str(again)])
    assert again.read_text() == target.read_text()  # idempotent


def _cpu_rows(op, speedups, cls="*", direction="fwd", check="ok"):
    """A CPU run's cpu and aten rows: the cpu kernel at ``speedup`` x ATen, one row per value."""
    rows = []
    for i, s in enumerate(speedups):
        base = {"op": op, "device": "cpu-x86_64", "bytes": 1, "class": cls, "case": f"{cls}{i}",
                "dtype": "fp32", "layout": "nchw", "direction": direction}
        rows += [dict(base, provider="aten", median_ms=1.0, speedup_vs_aten=1.0, check="ok"),
                 dict(base, provider="cpu", median_ms=1.0 / s, speedup_vs_aten=s, check=check)]
    return rows


def test_tune_cpu_rule(tmp_path):
    """``--cpu``: the CPU kernel per op and class only where no fwd / fwd+bwd row is more than 10%
    slower than ATen and the geometric mean is not slower; "aten" elsewhere (ops with a stock path
    only; unmeasured classes default to "aten" when any class is); the "cuda" entries are kept."""
    from pydense import _tuned

    rows = (_cpu_rows("conv2d", [1.5, 0.95], cls="dense") + _cpu_rows("conv2d", [2.0, 0.5], cls="depthwise")
            + _cpu_rows("conv2d", [0.5], cls="grouped", direction="bwd")  # bwd alone does not count
            + _cpu_rows("max_unpool2d", [1.2, 0.85])
            + _cpu_rows("pixel_shuffle", [0.95, 0.97])  # within 10%, but slower on the mean
            + _cpu_rows("confusion_matrix", [0.5])  # no stock path: stays on the CPU kernel
            + _cpu_rows("max_pool2d", [2.0], check="FAILED"))
    common.write_csv(str(tmp_path / "results" / "cpu-x86_64" / "all.csv"), rows)
    target = tmp_path / "_tuned.py"
    target.write_text(open(_tuned.__file__).read())
    assert tune.main([str(tmp_path / "results"), "--cpu", "--out", str(target)]) == 0
    written = {}
    exec(target.read_text(), written)
    auto = written["AUTO_BACKEND"]
    assert auto["conv2d"]["cpu"] == {"dense": "cpu", "depthwise": "aten", "*": "aten"}
    assert auto["max_unpool2d"]["cpu"] == "aten" and auto["pixel_shuffle"]["cpu"] == "aten"
    assert auto["pixel_unshuffle"]["cpu"] == "aten"  # measured as pixel_shuffle
    assert auto["confusion_matrix"]["cpu"] == "cpu" and auto["max_pool2d"]["cpu"] == "aten"
    assert {op: e["cuda"] for op, e in auto.items()} == {op: e["cuda"] for op, e in _tuned.AUTO_BACKEND.items()}
    evidence = written["EVIDENCE"]["cpu"]
    assert "dense: cpu 0.95-1.50x aten" in evidence["conv2d"] and "no stock path" in evidence["confusion_matrix"]
    assert "a failed check" in evidence["max_pool2d"]


def test_headline_tier_has_one_canonical_case_per_op():
    """Every benchmarked op is in the headline tier, with its canonical (full-size) case found in
    its bench module, in bf16 and fp32 channels_last (integer inputs: once), plus the models and
    the clients."""
    import torch

    from benchmarks import headline

    found = headline.entries(torch.device("cuda"), quick=False)
    ops = [e.op for e in found if e.kind == "op"]
    assert set(ops) == set(discover()) and [e.kind for e in found].count("models") == 1
    assert [e.kind for e in found].count("clients") == 1
    for e in found:
        if e.kind == "op":
            assert e.case.name.startswith(headline.CASES[e.op])
            if e.case.dtype.is_floating_point:
                assert e.case.layout == "channels_last"
                assert {x.dtype for x in found if x.op == e.op} == {torch.bfloat16, torch.float32}
            else:
                assert ops.count(e.op) == 1


def test_headline_smoke(tmp_path):
    """The headline tier's CLI end to end on CPU (one op, tiny, torch.compile through aot_eager):
    CSV rows for each provider and direction, and the pivot table."""
    from benchmarks import headline

    out = tmp_path / "hl"
    assert headline.main(["--quick", "--smoke", "--device", "cpu", "--ops", "pixel_shuffle",
                          "--compile-backend", "aot_eager", "--out", str(out)]) == 0
    (device_dir,) = out.iterdir()
    import csv
    rows = list(csv.DictReader(open(device_dir / "headline.csv")))
    assert {(r["provider"], r["direction"]) for r in rows} == {
        (p, d) for p in ("cpu", "aten", "compile") for d in ("fwd", "fwd+bwd")}
    assert all(r["check"] == "ok" for r in rows)
    table = (device_dir / "headline.md").read_text()
    assert "| pixel_shuffle" in table and "fwd+bwd" in table


def test_gpu_check_script_parses_and_reports(tmp_path):
    """scripts/gpu_check.sh is valid bash, and its report turns a junit file, the stage table and
    sanitizer logs into the summary's verdict, counts and failure messages."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["bash", "-n", os.path.join(root, "scripts", "gpu_check.sh")], check=True)
    work = tmp_path / "check"
    (work / "sanitizer").mkdir(parents=True)
    (work / "stages.tsv").write_text("stage\tstatus\tseconds\tcap\tnote\nbuild\tok\t120\t240\t\n"
                                     "tests\tFAILED (exit 1)\t200\t255\t\n")
    (work / "junit.xml").write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1" time="3">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad[cuda-triton]">'
        '<failure message="AssertionError: Tensor-likes are not close!">...</failure></testcase>'
        '<testcase classname="tests.test_b" name="test_err"><error message="RuntimeError: CUDA error"/>'
        '</testcase><testcase classname="tests.test_b" name="test_skip"><skipped/></testcase>'
        '</testsuite></testsuites>')
    (work / "tests.log").write_text("14 workers [4 items]\n")
    (work / "sanitizer" / "part-1.log").write_text(
        "========= Invalid __global__ write of size 4 bytes\n========= ERROR SUMMARY: 2 errors\n")
    summary = tmp_path / "check-summary.md"
    subprocess.run([sys.executable, os.path.join(root, "scripts", "gpu_check_report.py"), "check",
                    str(work), str(summary)], check=True)
    text = summary.read_text()
    assert text.splitlines()[2].startswith("**FAIL**")
    assert "tests 1 passed, 1 failed, 1 errors, 1 skipped" in text and "(4 selected)" in text
    assert "`FAILURE tests.test_a::test_bad[cuda-triton]`: AssertionError: Tensor-likes are not close!" in text
    assert "`ERROR tests.test_b::test_err`: RuntimeError: CUDA error" in text
    assert "| part-1.log | 2 | unfinished | ========= Invalid __global__ write of size 4 bytes |" in text


def test_clients_time_providers_in_turn():
    """benchmarks.clients times the providers round-robin (so drift hits all alike): each step
    runs once per round, in provider order, and the median of its own calls is reported."""
    import time

    import torch

    from benchmarks import clients

    calls = []

    def step(name, ms):
        def run():
            calls.append(name)
            time.sleep(ms / 1e3)
        return run

    got = clients.interleaved_ms({"stock": step("stock", 2), "patched": step("patched", 6)},
                                 torch.device("cpu"), 5)
    assert calls == ["stock", "patched"] * 5
    assert 2 <= got["stock"] < 5 <= 6 <= got["patched"] < 12


def test_clients_compiled_providers(tmp_path):
    """benchmarks.clients' compiled providers end to end on CPU (aot_eager: Dynamo's graphs and the
    fusion pass, no code generation): torch.compile and pydense.compile of the patched model
    check against stock, and --warm runs them without rows."""
    pytest.importorskip("torchvision")
    import torch

    from benchmarks import clients

    wanted = {"tv_deeplabv3_resnet50"}
    assert clients.run(True, torch.device("cpu"), wanted, modes=("infer",), providers=clients.PROVIDERS,
                       compile_backend="aot_eager", warm=True) == []
    rows = clients.run(True, torch.device("cpu"), wanted, modes=("infer",), providers=clients.PROVIDERS,
                       compile_backend="aot_eager")
    assert [r["provider"] for r in rows] == list(clients.PROVIDERS)
    assert all(r["check"] == "ok" and r["median_ms"] > 0 for r in rows), rows
    assert rows[-1]["notes"] == "fused: none" and rows[-1]["patched"] == 11


def test_ddp_expected_scaling_model():
    """benchmarks.ddp's expected scaling: the step's FLOPs counted on the meta device (forward +
    backward: about 3x the forward's), the gradient bytes the trainable parameters', the ring
    all-reduce 2 (N - 1) / N of them over the bus bandwidth, efficiencies in (0, 1]."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks import ddp
    from pydense import models

    (name, factory, kwargs, shape, _, kind), = [c for c in ddp._train_cases(False, torch.device("cuda"), None)
                                                if c[0] == "edsr_baseline_x4"]
    flops, grad = ddp.step_flops(factory, kwargs, shape, kind)
    with torch.device("meta"), FlopCounterMode(display=False) as fwd:
        factory(**kwargs, backend="torch")(torch.randn(shape))
    assert 2.5 * fwd.get_total_flops() < flops < 3.5 * fwd.get_total_flops()
    assert grad == 4 * models.parameter_count(models.edsr_baseline(scale=4), trainable_only=True)
    rows = [r for r in ddp.expected({"edsr_baseline_x4"})]
    assert {r["gpus"] for r in rows} == {8, 16, 64}
    for r in rows:
        bus = ddp.NVLINK_BUS_GBS if r["gpus"] == 8 else ddp.IB_BUS_GBS
        assert r["allreduce_ms"] == pytest.approx(2 * (r["gpus"] - 1) / r["gpus"] * grad / (bus * 1e9) * 1e3)
        assert 0 < r["efficiency_no_overlap"] <= r["efficiency_overlap"] <= 1
