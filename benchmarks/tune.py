"""Which pydense backend ``backend="auto"`` should pick on CUDA, from benchmark CSVs.

    python -m benchmarks.tune [RESULTS_DIR]      (default: benchmarks/results)

For every op CSV of a CUDA device, compares the pydense backends over the rows where all of them
passed the oracle check: the backend with the lowest geometric-mean time wins. Prints the entries
for ``pydense/_tuned.py`` (which is edited by hand, with the results it follows committed).
"""
import csv
import glob
import math
import os
import sys
from collections import defaultdict

from .common import PYDENSE_BACKENDS, RESULTS_DIR


def fastest(rows):
    """{backend: geometric-mean ms} over the (case, dtype, layout, direction) keys all share."""
    times = defaultdict(dict)
    for r in rows:
        if r["provider"] in PYDENSE_BACKENDS and r["check"] == "ok" and r["median_ms"]:
            times[r["provider"]][(r["case"], r["dtype"], r["layout"], r["direction"])] = float(r["median_ms"])
    if not times:
        return {}
    common = set.intersection(*(set(t) for t in times.values()))
    return {b: math.exp(sum(math.log(t[k]) for k in common) / len(common))
            for b, t in times.items() if common}


def main(root=RESULTS_DIR):
    for path in sorted(glob.glob(os.path.join(root, "*", "*.csv"))):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows or rows[0]["device"].startswith("cpu"):
            continue
        scores = fastest(rows)
        if scores:
            best = min(scores, key=scores.get)
            detail = ", ".join(f"{b} {ms:.4g} ms" for b, ms in sorted(scores.items(), key=lambda x: x[1]))
            print(f'"{rows[0]["op"]}": {{"cuda": "{best}", "cpu": "cpu"}},  # {rows[0]["device"]}: {detail}')


if __name__ == "__main__":
    main(*sys.argv[1:])
