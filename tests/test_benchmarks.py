"""The benchmark harness's pure parts (the suite itself runs in CI as `make bench-quick`)."""
import os
import sys

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
