"""Speed of one student's `grade submit`, of the light commands, and of single checks.

Every figure is a ratio against a baseline measured in this same run on this same machine, the
baselines and the commands timed in turns, so the numbers mean the same on a laptop and on a
loaded CI runner:

- `grade submit` of a 100-part submission (benchmarks/workload.py) vs `python -c "import sympy, numpy"` (target <= 2x);
- `grade --help`, `grade list`, `grade show` vs `python -c pass` (target < 3x), and whether
  they import sympy at all (`python -X importtime`; target: never);
- peak memory (max RSS) of `grade submit` (target < 300 MB);
- the median single check vs a naive `simplify(a - b) == 0` checker on the same corpus
  (target >= 5x faster), and the worst check vs its budget. A check is what grading one
  answer costs in a grading run: read the answer from its text and judge it on the real domain
  against a reference that is compiled and sampled once per exercise variant (and cached);
  the naive checker gets both sides already parsed. The one-off `grade check`, which also
  compiles and samples its reference, is timed and printed too. The corpus is timed in
  `--repeat` fresh processes (cold caches for both checkers, each pair timed once per
  process) and the median of their speed-ups is reported.

    python benchmarks/bench_speed.py [--repeat 5] [--parts 100]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workload import CLI, ROOT, build_bank, build_submission, compile_checkout, count_parts, peak_memory_mb

sys.path.insert(0, str(ROOT / "tests"))


def walls(commands: dict[str, list[str]], repeat: int) -> dict[str, float]:
    """Median wall time of each command (output discarded), timed in turns: one run of each, `repeat`
    times over, so that a machine getting slower or faster during the run moves baselines and
    commands alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(runs) for name, runs in times.items()}


def imports_sympy(command: list[str]) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], capture_output=True, text=True)
    return any(line.rstrip().endswith("| sympy") for line in done.stderr.splitlines())


def check_corpus() -> list[tuple[str, str, list[str]]]:
    from test_grading import HOSTILE, TRICKY

    corpus = [(expected, answer, variables) for expected, answer, variables, _ in TRICKY]
    corpus += [("2x", text, ["x"]) for text in HOSTILE.values()]
    return corpus


def time_checks(corpus) -> dict[str, list[float]]:
    """Per pair, in corpus order: our check of the answer against a prepared reference ("ours": as
    in every grading run, where a reference is compiled and sampled once per exercise variant and
    cached); the one-off `grade check`, which compiles and samples the reference first ("oneoff");
    and the naive simplify checker on the same pair, parsed beforehand ("naive"), timed right after."""
    import sympy

    from grader.errors import GraderError
    from grader.grade import check_answer, check_reference
    from grader.options import Options
    from grader.parse import parse_expression
    from reference.chain import symbol

    times: dict[str, list[float]] = {"ours": [], "oneoff": [], "naive": []}
    options = Options()
    for expected, answer, variables in corpus:
        started = time.perf_counter()
        reference = check_reference(expected, variables)
        reference.sample()
        prepared = time.perf_counter()
        check_answer(reference, answer, options)
        done = time.perf_counter()
        times["ours"].append(done - prepared)
        times["oneoff"].append(done - started)
        names = {v: symbol(v) for v in variables}
        try:
            a, b = parse_expression(expected, names), parse_expression(answer, names)
        except GraderError:
            continue
        started = time.perf_counter()
        sympy.simplify(a - b) == 0
        times["naive"].append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", type=int, default=100, help="parts of the submission, at least (default 100)")
    parser.add_argument("--checks-only", action="store_true", help="time the check corpus once, print JSON (used by the run)")
    args = parser.parse_args()
    if args.checks_only:
        print(json.dumps(time_checks(check_corpus())))
        return 0
    results: list[tuple[str, float, str, bool]] = []
    compile_checkout()

    light = {"grade --help": [*CLI, "--help"], "grade list": [*CLI, "list"],
             "grade show": [*CLI, "show", "power-of-quadratic"]}
    with tempfile.TemporaryDirectory() as folder:
        bank = Path(folder) / "bank"
        answers = build_submission(Path(folder) / "student", build_bank(bank, args.parts))
        parts = count_parts(bank)
        submit = [*CLI, "submit", str(answers), "--exercises", str(bank)]
        subprocess.run(submit, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm the caches once
        timed = walls({"bare": [sys.executable, "-c", "pass"], "floor": [sys.executable, "-c", "import sympy, numpy"],
                       **light, "submit": submit}, args.repeat)
        memory = peak_memory_mb(submit)
    bare, floor = timed["bare"], timed["floor"]
    print(f"baseline: python -c pass {bare * 1000:.0f} ms; import sympy, numpy {floor * 1000:.0f} ms")
    for name, command in light.items():
        ratio = timed[name] / bare
        results.append((f"{name} / python -c pass", ratio, "< 3x", ratio < 3))
        results.append((f"{name} imports sympy", float(imports_sympy(command)), "never", not imports_sympy(command)))
    print(f"grade submit of {parts} parts: {timed['submit'] * 1000:.0f} ms")
    ratio = timed["submit"] / floor
    results.append((f"submit ({parts} parts) / import", ratio, "<= 2x", ratio <= 2))
    results.append(("submit peak memory (MB)", memory, "< 300", memory < 300))

    runs = [json.loads(subprocess.run([sys.executable, __file__, "--checks-only"], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(args.repeat)]
    def speedups(kind: str) -> list[float]:
        return sorted(statistics.median(run["naive"]) / statistics.median(run[kind]) for run in runs)

    def pooled(kind: str) -> list[float]:
        return [seconds for run in runs for seconds in run[kind]]

    ours, oneoff, naive = pooled("ours"), pooled("oneoff"), pooled("naive")
    print(f"checks: {len(runs[0]['ours'])}, in {len(runs)} fresh processes; naive simplify median "
          f"{statistics.median(naive) * 1000:.1f} ms, worst {max(naive) * 1000:.1f} ms")
    for kind, label, times in (("ours", "ours, reference prepared", ours), ("oneoff", "one-off grade check", oneoff)):
        print(f"  {label}: median {statistics.median(times) * 1000:.2f} ms, worst {max(times) * 1000:.1f} ms; "
              f"speed-up per process {', '.join(f'{s:.1f}' for s in speedups(kind))}")
    results.append(("median check speed-up vs naive", statistics.median(speedups("ours")), ">= 5x",
                    statistics.median(speedups("ours")) >= 5))
    results.append(("worst check (s)", max(oneoff), "<= budget 2 s", max(oneoff) <= 2.0))

    print()
    for name, value, target, passed in results:
        print(f"{name:<36} {value:8.2f}   target {target:<14} {'PASS' if passed else 'FAIL'}")
    return 0 if all(r[3] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
