"""Ahead-of-time compilation of every Triton kernel configuration pydense ships, without a GPU.

Run as a script (the Triton interpreter must be off, so tests call it in a subprocess):

    python tests/triton_aot.py max_unpool [--targets 80,90] [--dtypes fp32,fp16,bf16]

For each (kernel, constexprs[, dtypes]) in ``pydense.kernels.<module>.CONFIGS``, each data dtype and each
target it runs ``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` and then
``ptxas -v`` on the PTX for registers and spills. Prints one JSON row per compile.

Signature convention: ``*_ptr`` arguments are data pointers of the tested dtype, except those in
POINTER_TYPES (indices, workspaces, tables; ``idx_ptr`` is uint8 where the row sets COMPACT);
tuple arguments (the argument groups of kernels/conv/shared.py: ``*_strides``, ``conv``,
``taps_h``/``taps_w``; see ``tuple_arity``) are tuples of i32 scalars; every other runtime argument
is an i32 scalar (shapes and strides below 2^31).
"""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import time

POINTER_TYPES = {"idx_ptr": "*i64", "flags_ptr": "*i32", "winner_ptr": "*i32",
                 "hidx_ptr": "*i32", "widx_ptr": "*i32", "hrng_ptr": "*i32", "wrng_ptr": "*i32",
                 "hlam_ptr": "acc", "wlam_ptr": "acc", "part_ptr": "acc",  # acc: the accumulation type
                 "target_ptr": "*i64", "hist_ptr": "*i64", "cm_ptr": "*i64",
                 "gids_ptr": "*i64", "pids_ptr": "*i64", "order_ptr": "*i64", "cov_ptr": "*i64"}
SCALAR_TYPES = {"scale": "fp32"}
# Tuple arguments other than ``*_strides`` (the 4 strides of a tensor), by name: their lengths.
TUPLE_ARITY = {"conv": 6, "taps_h": 3, "taps_w": 3}  # (sh, sw, ph, pw, dh, dw); (g, step, inv)


def tuple_arity(name):
    """The length of the tuple argument ``name``, or None for a scalar."""
    return 4 if name.endswith("_strides") else TUPLE_ARITY.get(name)


def signature(fn, dtype, constexprs=None):
    sig = {}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
        elif tuple_arity(p.name):
            sig[p.name] = ("i32",) * tuple_arity(p.name)
        elif p.name.endswith("_ptr"):
            kind = POINTER_TYPES.get(p.name, "*" + dtype)
            if p.name == "idx_ptr" and (constexprs or {}).get("COMPACT"):
                kind = "*u8"  # compact (window-local) indices
            sig[p.name] = ("*fp64" if dtype == "fp64" else "*fp32") if kind == "acc" else kind
        else:
            sig[p.name] = SCALAR_TYPES.get(p.name, "i32")
    return sig


def ptxas_resources(ptx, arch):
    import triton

    ptxas = os.path.join(os.path.dirname(triton.backends.nvidia.__file__), "bin", "ptxas")
    with open(f"/tmp/pydense_aot_{os.getpid()}.ptx", "w") as f:
        f.write(ptx)
    res = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}", f.name, "-o", os.devnull],
                         capture_output=True, text=True)
    os.unlink(f.name)
    text = res.stdout + res.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return (int(regs.group(1)) if regs else None,
            (int(spill.group(1)) + int(spill.group(2))) if spill else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("module")
    ap.add_argument("--targets", default="80,90")
    ap.add_argument("--dtypes", default="fp32,fp16,bf16")
    args = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("run with TRITON_INTERPRET unset: the interpreter replaces the compiler")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from triton.runtime.autotuner import Autotuner

    mod = importlib.import_module(f"pydense.kernels.{args.module}")
    seen = set()
    # (kernel, constexprs[, dtypes[, options]]): dtypes limits the data types (None: all),
    # options sets num_warps / num_stages (default: the module's NUM_WARPS).
    for name, constexprs, *extra in mod.CONFIGS:
        only = extra[0] if extra else None
        options = {"num_warps": getattr(mod, "NUM_WARPS", 4), **(extra[1] if len(extra) > 1 else {})}
        fn = getattr(mod, name)
        if isinstance(fn, Autotuner):  # compile the kernel itself, config by config
            fn = fn.fn
        for dtype in only or args.dtypes.split(","):
            sig = signature(fn, dtype, constexprs)
            key = (name, tuple(sorted(constexprs.items())), tuple(sig.values()),
                   tuple(sorted(options.items())))
            if key in seen:  # kernels without data pointers compile once
                continue
            seen.add(key)
            for cc in (int(t) for t in args.targets.split(",")):
                t0 = time.time()
                compiled = triton.compile(
                    ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                    target=GPUTarget("cuda", cc, 32), options=options)
                arch = f"{cc}a" if cc == 90 else str(cc)
                regs, spills = ptxas_resources(compiled.asm["ptx"], arch)
                print(json.dumps({
                    "kernel": name, "constexprs": constexprs, "dtype": dtype, "target": f"sm_{cc}",
                    "options": options,
                    "shared_bytes": compiled.metadata.shared, "registers": regs,
                    "spill_bytes": spills, "cubin_bytes": len(compiled.asm["cubin"]),
                    "seconds": round(time.time() - t0, 2)}), flush=True)


if __name__ == "__main__":
    main()
