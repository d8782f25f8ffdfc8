"""Write ``pydense/_tuned.py`` (what ``backend="auto"`` picks on CUDA) from a GPU run's results.

    python -m benchmarks.tune RESULTS_DIR [--print] [--device NAME] [--out PATH]

RESULTS_DIR holds benchmark CSVs (``<device>/<op>.csv`` of ``python -m benchmarks``,
``<device>/headline.csv`` of ``python -m benchmarks.headline``; any depth). For every op of a CUDA
device, the pydense backends are compared over the rows where all of them passed the oracle check:
the backend with the lowest geometric-mean time wins; a backend with a FAILED or ERROR row for
the op is never picked. Ops measured by another op's benchmark (``MEASURED_AS``) follow it.

The file is rewritten in place: only the ``AUTO_BACKEND`` assignment changes (the "cuda" entry
of measured ops, with the evidence as a comment); its docstring, the CPU entries, the ops without
GPU results and ``MEASURED_AS`` are kept. ``--print`` shows the new file instead of writing it.
"""
import argparse
import ast
import csv
import glob
import math
import os
import sys
from collections import defaultdict

from .common import PYDENSE_BACKENDS, REPO_ROOT

TUNED_PATH = os.path.join(REPO_ROOT, "pydense", "_tuned.py")


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


def failing(rows):
    """The pydense backends with a FAILED or ERROR row."""
    return {r["provider"] for r in rows
            if r["provider"] in PYDENSE_BACKENDS and r["check"] in ("FAILED", "ERROR")}


def read_results(root):
    """{device: {op: [rows]}} of the CUDA devices' op rows in every CSV under ``root``."""
    found = defaultdict(lambda: defaultdict(list))
    for path in sorted(glob.glob(os.path.join(root, "**", "*.csv"), recursive=True)):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"op", "device", "provider", "check", "median_ms"} <= set(reader.fieldnames or ()):
                continue  # model / PQ tables
            for r in reader:
                if not r["device"].startswith("cpu"):
                    found[r["device"]][r["op"]].append(r)
    return found


def choose(by_op):
    """{op: (backend, detail)} for the ops with a winner."""
    picks = {}
    for op, rows in sorted(by_op.items()):
        bad = failing(rows)
        scores = {b: ms for b, ms in fastest(rows).items() if b not in bad}
        if not scores:
            continue
        best = min(scores, key=scores.get)
        detail = ", ".join(f"{b} {ms:.4g} ms" for b, ms in sorted(scores.items(), key=lambda x: x[1]))
        if bad:
            detail += f"; failed: {', '.join(sorted(bad))}"
        picks[op] = (best, detail)
    return picks


def _entry(op, entry, comment=""):
    text = f'    "{op}": {{' + ", ".join(f'"{k}": "{v}"' for k, v in entry.items()) + "},"
    return f"{text}  # {comment}" if comment else text


def render(source, picks, device):
    """``source`` (the text of _tuned.py) with its AUTO_BACKEND assignment rewritten."""
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "AUTO_BACKEND" for t in n.targets))
    namespace = {}
    exec(compile(source, "_tuned.py", "exec"), namespace)  # noqa: S102 - our own file
    auto, measured_as = namespace["AUTO_BACKEND"], namespace.get("MEASURED_AS", {})
    lines = ["AUTO_BACKEND = {",
             f"    # cuda: measured on {device} (python -m benchmarks.tune: geometric-mean median ms",
             "    # of each pydense backend over the cases all passed). Entries without a comment had",
             "    # no results in that run and are kept (Triton until a GPU run measures the op)."]
    for op, entry in auto.items():
        pick = picks.get(measured_as.get(op, op))
        if pick:
            entry = dict(entry, cuda=pick[0])
            via = f" (as {measured_as[op]})" if op in measured_as else ""
            line = _entry(op, entry, pick[1] + via)
            if len(line) > 110:  # the evidence on its own line
                lines.append(f"    # {op}{via}: {pick[1]}")
                line = _entry(op, entry)
            lines.append(line)
        else:
            lines.append(_entry(op, entry))
    lines.append("}")
    src = source.splitlines()
    start = node.lineno - 1
    while start > 0 and src[start - 1].lstrip().startswith("#"):  # its leading comment block
        start -= 1
    return "\n".join(src[:start] + lines + src[node.end_lineno:]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a results folder (benchmark CSVs of a GPU run, any depth)")
    parser.add_argument("--out", default=TUNED_PATH, help="the file to rewrite (default: %(default)s)")
    parser.add_argument("--device", help="the CUDA device's name in the CSVs (when there are several)")
    parser.add_argument("--print", "--dry-run", dest="print_only", action="store_true",
                        help="print the new file instead of writing it")
    args = parser.parse_args(argv)
    found = read_results(args.results)
    devices = sorted(found) if args.device is None else [args.device]
    if not found or (args.device and args.device not in found):
        parser.error(f"no CUDA benchmark CSVs{' of ' + args.device if args.device else ''} under {args.results}")
    if len(devices) > 1:
        parser.error(f"results of several devices ({', '.join(devices)}): choose one with --device")
    device = devices[0]
    picks = choose(found[device])
    with open(args.out) as f:
        text = render(f.read(), picks, device)
    compile(text, args.out, "exec")
    for op, (best, detail) in picks.items():
        print(f"{op}: {best}  ({detail})", file=sys.stderr)
    if args.print_only:
        print(text, end="")
    else:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out} ({len(picks)} ops measured on {device})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
