"""The summary of a GPU check command (scripts/gpu_check.sh), from what its stages left so far.

    python scripts/gpu_check_report.py check|bench WORK_DIR SUMMARY.md [--dry-run]

Reads WORK_DIR/stages.tsv (one line per finished stage), env.txt, the test junit file and log,
the sanitizer logs and coverage, the headline tier's tables; writes SUMMARY.md: the verdict line
with the test counts (check) or the benchmark table (bench) first, then the stages with their
times, the details and the environment. Standard library only; every input may be missing (a
stage cut short), and whatever is there is reported.
"""
import csv
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

MAX_FAILURES = 60


def _read(path, limit=None):
    try:
        with open(path, errors="replace") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError:
        return ""


def stages(work):
    path = os.path.join(work, "stages.tsv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def junit(work):
    """(counts, [(test id, message)]) from the junit file, else from the pytest log."""
    counts, failures = {}, []
    path = os.path.join(work, "junit.xml")
    if os.path.exists(path):
        try:
            root = ET.parse(path).getroot()
            suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
            for key in ("tests", "failures", "errors", "skipped"):
                counts[key] = sum(int(s.get(key, 0)) for s in suites)
            counts["time"] = sum(float(s.get("time", 0)) for s in suites)
            for case in root.iter("testcase"):
                for kind in ("failure", "error"):
                    node = case.find(kind)
                    if node is not None:
                        test = f"{case.get('classname', '')}::{case.get('name', '')}"
                        message = (node.get("message") or node.text or "").strip().splitlines()
                        failures.append((f"{kind.upper()} {test}", message[0][:300] if message else ""))
        except (ET.ParseError, ValueError) as e:
            counts = {"junit": f"unreadable ({e})"}
    log = _read(os.path.join(work, "tests.log"))
    if not failures:
        for m in re.finditer(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", log, re.M):
            failures.append((f"{m.group(1)} {m.group(2)}", (m.group(3) or "")[:300]))
    m = re.search(r"workers \[(\d+) items?\]", log) or re.search(r"(\d+) selected", log)
    if m:
        counts["selected"] = int(m.group(1))
    tail = [l for l in log.splitlines() if re.match(r"^=+ .*(passed|failed|skipped|error|no tests)", l)]
    if tail:
        counts["pytest"] = tail[-1].strip("= ")
    return counts, failures


def check_section(work, out):
    counts, failures = junit(work)
    out.append("## GPU tests (pytest -m cuda)\n")
    if counts.get("tests") is not None:
        passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        out.append(f"- {passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
                   f"{counts['skipped']} skipped of {counts['tests']} run"
                   + (f" ({counts['selected']} selected)" if "selected" in counts else "")
                   + f", {counts.get('time', 0):.0f} s (junit)")
    elif "selected" in counts:
        out.append(f"- {counts['selected']} selected; no junit file (the run was cut short?)")
    if "pytest" in counts:
        out.append(f"- pytest: {counts['pytest']}")
    if "junit" in counts:
        out.append(f"- junit: {counts['junit']}")
    if failures:
        out.append(f"\n{len(failures)} failing:\n")
        out += [f"- `{t}`: {m}" for t, m in failures[:MAX_FAILURES]]
        if len(failures) > MAX_FAILURES:
            out.append(f"- ... {len(failures) - MAX_FAILURES} more in junit.xml")
    log = _read(os.path.join(work, "tests.log"))
    m = re.search(r"slowest \d+ durations =+\n(.*?)\n(?:=|\n)", log, re.S)
    if m:
        out.append("\nSlowest:\n\n```\n" + "\n".join(m.group(1).splitlines()[:10]) + "\n```")
    out.append("")
    out.append("## compute-sanitizer\n")
    sdir = os.path.join(work, "sanitizer")
    coverage = _read(os.path.join(sdir, "coverage.txt")).strip()
    rows = []
    for path in sorted(glob.glob(os.path.join(sdir, "part-*.log"))):
        text = _read(path)
        summary = re.findall(r"ERROR SUMMARY: (\d+) errors?", text)
        done = re.search(r"(\d+) units done", text)
        rows.append((os.path.basename(path), summary[-1] if summary else "-",
                     done.group(1) if done else "unfinished",
                     next((l.strip()[:160] for l in text.splitlines()
                           if re.match(r"^=+ (Invalid|Error|Program hit|.*not supported)", l)
                           or l.startswith(("Traceback", "AssertionError", "RuntimeError"))), "")))
    if rows:
        out.append(table(("part", "memcheck errors", "units", "first problem"), rows))
    unsupported = sorted(glob.glob(os.path.join(sdir, "unsupported-*.log")))
    if unsupported:
        lines = [l for l in _read(unsupported[0]).splitlines() if l.startswith("=")]
        first = next((l for l in lines if re.search("not supported|unsupported", l, re.I)),
                     lines[0] if lines else "")
        out.append(f"compute-sanitizer did not run here: {first.strip()[:200]}")
    plain = _read(os.path.join(sdir, "plain.log"))
    if plain:
        out.append("\nPlain run (no sanitizer): " + ("done" if "units done" in plain else "FAILED: "
                   + " ".join(plain.strip().splitlines()[-1:])[:200]))
    if coverage:
        out.append("\n" + "\n".join(f"- {l}" for l in coverage.splitlines()))
    out.append("")


def bench_section(work, out):
    mds = sorted(glob.glob(os.path.join(work, "results", "*", "headline.md")))
    if not mds:
        out.append("## Headline benchmarks\n\nno results (the stage did not run or wrote nothing)\n")
        return
    text = _read(mds[0])
    out.append("## Headline benchmarks\n")
    # the table and what follows; the environment list is in the Environment section
    out.append(text[text.find("Median ms"):].strip() if "Median ms" in text else text)
    env = [l for l in text.splitlines() if l.startswith(("- device", "- copy bandwidth", "- elapsed"))]
    out.append("\n" + "\n".join(env) + "\n")
    tuned = _read(os.path.join(work, "tuned.py"))
    tune_log = _read(os.path.join(work, "tune.log")).strip()
    if tune_log:
        out.append("## backend=\"auto\" from these results (python -m benchmarks.tune)\n\n```\n"
                   + tune_log[-3000:] + "\n```\n")
    if tuned:
        out.append("(the proposed pydense/_tuned.py is tuned.py in the tarball)\n")


def main(argv):
    dry = "--dry-run" in argv
    mode, work, summary = [a for a in argv if a != "--dry-run"][:3]
    out = []
    rows = stages(work)
    title = {"check": "correctness (build, GPU tests, compute-sanitizer)",
             "bench": "headline benchmarks"}[mode]
    out.append(f"# pydense GPU check: {title}" + (" - DRY RUN (CPU, Triton interpreter)" if dry else ""))
    out.append("")
    bad = [r for r in rows if r["status"] not in ("ok", "reused", "skipped", "unsupported", "warn")]
    verdict = "FAIL" if bad else ("PASS" if rows else "NOT STARTED")
    total = sum(int(r["seconds"] or 0) for r in rows if not r["stage"].startswith("warm (beside"))
    line = f"**{verdict}**: {len(rows)} stages finished, {total} s"
    if mode == "check":
        counts, failures = junit(work)
        if counts.get("tests") is not None:
            passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
            line += (f"; tests {passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
                     f"{counts['skipped']} skipped")
        san = next((r for r in rows if r["stage"] == "sanitizer"), None)
        if san:
            line += f"; sanitizer {san['status']}"
    if bad:
        line += "; failed: " + ", ".join(f"{r['stage']} ({r['status']})" for r in bad)
    out.append(line + "\n")
    if mode == "bench":
        bench_section(work, out)
    out.append("## Stages\n")
    out.append(table(("stage", "status", "seconds", "cap", "note"),
                     [(r["stage"], r["status"], r["seconds"], r["cap"], r["note"]) for r in rows]))
    out.append("")
    if mode == "check":
        check_section(work, out)
    env = _read(os.path.join(work, "env.txt"), 6000).strip()
    if env:
        out.append("## Environment\n\n```\n" + env + "\n```\n")
    files = sorted(os.path.relpath(p, work) for p in glob.glob(os.path.join(work, "**", "*"), recursive=True)
                   if os.path.isfile(p))
    out.append(f"## Files ({mode}-results.tar.gz)\n\n" + ", ".join(files) + "\n")
    os.makedirs(os.path.dirname(os.path.abspath(summary)), exist_ok=True)
    with open(summary + ".tmp", "w") as f:
        f.write("\n".join(out))
    os.replace(summary + ".tmp", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
