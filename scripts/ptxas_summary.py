"""Summarise the ``ptxas -v`` lines of a build log: one row per (kernel, architecture).

    python scripts/ptxas_summary.py build/build.log
"""
import re
import shutil
import subprocess
import sys

ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+a?)'")
REGS = re.compile(r"Used (\d+) registers")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
SMEM = re.compile(r"(\d+) bytes smem")


def demangle(names):
    if not names or shutil.which("c++filt") is None:
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    pretty = out.splitlines()
    return pretty if len(pretty) == len(names) else names


def main(path):
    rows, cur = [], None
    for line in open(path, errors="replace"):
        if m := ENTRY.search(line):
            cur = {"kernel": m.group(1), "arch": m.group(2), "regs": "?", "spill": "0", "smem": "0"}
            rows.append(cur)
        elif cur is not None:
            if m := REGS.search(line):
                cur["regs"] = m.group(1)
                if s := SMEM.search(line):
                    cur["smem"] = s.group(1)
            elif m := SPILL.search(line):
                cur["spill"] = str(int(m.group(2)) + int(m.group(3)))
    if not rows:
        print("ptxas: no CUDA kernels in this build (CPU-only build)")
        return
    names = demangle([r["kernel"] for r in rows])
    print(f"ptxas resource usage ({len(rows)} kernel builds):")
    print(f"{'arch':<7} {'regs':>4} {'spill B':>7} {'smem B':>6}  kernel")
    for r, name in sorted(zip(rows, names), key=lambda x: (x[1], x[0]["arch"])):
        name = re.sub(r"pydense::(\w+)::\(anonymous namespace\)::", r"\1::", name)
        print(f"{r['arch']:<7} {r['regs']:>4} {r['spill']:>7} {r['smem']:>6}  {name.split('(')[0]}")


if __name__ == "__main__":
    main(sys.argv[1])
