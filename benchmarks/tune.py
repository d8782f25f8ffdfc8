"""Write ``pydense/_tuned.py`` (what ``backend="auto"`` picks) from benchmark results.

    python -m benchmarks.tune RESULTS_DIR [--cpu] [--print] [--device NAME] [--out PATH]

RESULTS_DIR holds benchmark CSVs (``<device>/<op>.csv`` of ``python -m benchmarks``,
``<device>/headline.csv`` of ``python -m benchmarks.headline``; any depth).

* CUDA (default): for every op, the pydense backends are compared over the rows where all of them
  passed the oracle check: the backend with the lowest geometric-mean time wins; a backend with a
  FAILED or ERROR row for the op is never picked.
* ``--cpu``: per op and shape class (the CSV's ``class`` column), the C++ CPU kernel is kept only
  where it is never more than 10% slower than ATen on any row (fwd and fwd+bwd, every layout) and
  not slower on the geometric mean; elsewhere ``auto`` calls the stock op (``"aten"``), for ops
  whose public function has that path (``OpSpec.aten``).

Ops measured by another op's benchmark (``MEASURED_AS``) follow it. Only the AUTO_BACKEND and
EVIDENCE assignments change (that device type's entry of the measured ops, and the measurement
behind it); the docstring, the other device type's entries, the ops without results and
``MEASURED_AS`` are kept. ``--print`` shows the new file instead of writing it.
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


def read_results(root, cpu=False):
    """{device: {op: [rows]}} of the op rows in every CSV under ``root``: the CUDA devices', or
    with ``cpu`` the CPU's."""
    found = defaultdict(lambda: defaultdict(list))
    for path in sorted(glob.glob(os.path.join(root, "**", "*.csv"), recursive=True)):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"op", "device", "provider", "check", "median_ms"} <= set(reader.fieldnames or ()):
                continue  # model / PQ tables
            for r in reader:
                if r["device"].startswith("cpu") == cpu:
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


# The CPU rule: auto keeps the C++ CPU kernel for a class of shapes only when it is never more
# than 10% slower than the stock op (ATen) on any of the class's rows (fwd and fwd+bwd, every
# layout) and not slower on their geometric mean; otherwise auto calls the stock op ("aten").
CPU_WORST, CPU_MEAN = 0.9, 1.0


def choose_cpu(by_op):
    """{op: (choice, detail)}: choice is "cpu", "aten" or {shape class: either, "*": ...} (the
    classes of the bench module's shape_class; "*", every class not measured, is "aten" where any
    measured class is). Ops whose public function has no stock path keep "cpu"."""
    from pydense.ops import registry

    picks = {}
    for op, rows in sorted(by_op.items()):
        classes = defaultdict(list)
        for r in rows:
            if r["provider"] == "cpu" and r["direction"] in ("fwd", "fwd+bwd"):
                classes[r.get("class") or "*"].append(r)
        spec = registry.OPS.get(op)
        aten_ok = spec is None or spec.aten
        chosen, notes = {}, []
        for cls, rs in sorted(classes.items()):
            speed = [float(r["speedup_vs_aten"]) for r in rs if r["check"] == "ok" and r["speedup_vs_aten"]]
            failed = len(speed) < len(rs)
            worst = min(speed, default=0.0)
            mean = math.exp(sum(map(math.log, speed)) / len(speed)) if speed else 0.0
            keep = not failed and worst >= CPU_WORST and mean >= CPU_MEAN
            chosen[cls] = "cpu" if keep or not aten_ok else "aten"
            why = "" if keep or aten_ok else ", no stock path"
            measured = (f"cpu {worst:.2f}-{max(speed):.2f}x aten (geomean {mean:.2f}x, " if speed
                        else "(")
            notes.append(f"{cls}: {measured}{len(speed)} rows{', a failed check' if failed else ''}{why})")
        if not chosen:
            continue
        values = set(chosen.values())
        if len(values) == 1:
            choice = values.pop()
        else:
            choice = dict(chosen)
            choice["*"] = "aten" if "aten" in values else "cpu"
        picks[op] = (choice, "; ".join(notes))
    return picks


def _fmt(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}": {_fmt(v)}' for k, v in value.items()) + "}"
    return f'"{value}"'


def render(source, picks, device, device_type="cuda"):
    """``source`` (the text of _tuned.py) with its AUTO_BACKEND and EVIDENCE assignments rewritten:
    the ``device_type`` entry of each op in ``picks`` (ops measured as another follow it), with
    the measurement in EVIDENCE[device_type]; everything else is kept."""
    tree = ast.parse(source)
    namespace = {}
    exec(compile(source, "_tuned.py", "exec"), namespace)  # noqa: S102 - our own file
    auto, measured_as = namespace["AUTO_BACKEND"], namespace.get("MEASURED_AS", {})
    evidence = {k: dict(v) for k, v in namespace.get("EVIDENCE", {}).items()}
    evidence.setdefault(device_type, {})
    lines = ["AUTO_BACKEND = {"]
    for op, entry in auto.items():
        pick = picks.get(measured_as.get(op, op))
        if pick:
            entry = dict(entry, **{device_type: pick[0]})
            via = f" (measured as {measured_as[op]})" if op in measured_as else ""
            evidence[device_type][op] = f"{device}: {pick[1]}{via}"
        lines.append(f'    "{op}": {_fmt(entry)},')
    lines.append("}")
    lines.append("")
    lines.append("EVIDENCE = {")
    for kind in sorted(evidence):
        if not evidence[kind]:
            lines.append(f'    "{kind}": {{}},')
            continue
        lines.append(f'    "{kind}": {{')
        for op, text in sorted(evidence[kind].items()):
            lines.append(f'        "{op}":')
            lines.append(f"            {text!r},")
        lines.append("    },")
    lines.append("}")
    src = source.splitlines()
    spans = sorted((n.lineno - 1, n.end_lineno) for n in tree.body if isinstance(n, ast.Assign)
                   and any(getattr(t, "id", None) in ("AUTO_BACKEND", "EVIDENCE") for t in n.targets))
    start, end = spans[0][0], spans[-1][1]
    return "\n".join(src[:start] + lines + src[end:]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a results folder (benchmark CSVs, any depth)")
    parser.add_argument("--cpu", action="store_true",
                        help="decide the CPU entries from a CPU run (pydense's CPU kernels vs ATen)")
    parser.add_argument("--out", default=TUNED_PATH, help="the file to rewrite (default: %(default)s)")
    parser.add_argument("--device", help="the device's name in the CSVs (when there are several)")
    parser.add_argument("--print", "--dry-run", dest="print_only", action="store_true",
                        help="print the new file instead of writing it")
    args = parser.parse_args(argv)
    found = read_results(args.results, cpu=args.cpu)
    kind = "CPU" if args.cpu else "CUDA"
    devices = sorted(found) if args.device is None else [args.device]
    if not found or (args.device and args.device not in found):
        parser.error(f"no {kind} benchmark CSVs{' of ' + args.device if args.device else ''} under {args.results}")
    if len(devices) > 1:
        parser.error(f"results of several devices ({', '.join(devices)}): choose one with --device")
    device = devices[0]
    picks = (choose_cpu if args.cpu else choose)(found[device])
    with open(args.out) as f:
        text = render(f.read(), picks, device, "cpu" if args.cpu else "cuda")
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
