"""Benchmark `grade batch` against `grade submit`: does a class cost less than a class of single runs?

Builds, in a temporary folder, the workload of workload.py (a bank of at least `--parts` parts,
default 100, and examples/sample answering all of it). Then copies that
submission `--copies` times (default 20) into a class folder and times, in this one run and
through the real CLI:

- one `grade submit` of the submission (a fresh process: imports, bank, references, grading),
  as students run it (a forked helper grades part of it on a second core) and with `--no-helper`
  (one grading process);
- `grade batch --jobs 1` and `grade batch --jobs 2` on the class.

Targets: batch(copies) / submit(1) <= 4 (a batch reuses imports, the parsed bank and the compiled
references), like against like: `--jobs 1` against `submit --no-helper`, one grading process each,
and `--jobs 2` against `submit`, two each; and jobs1 / jobs2 >= 1.6 (two workers on two cores).
Exit status 1 if a target is missed. "cores busy" is how many cores the whole machine kept busy
during the command (from /proc/stat), so run it on an otherwise idle machine.

It also times `grade batch --jobs 1` of a class of one, to print the best jobs1 / jobs2 that two
workers could reach on this workload (Amdahl's law): the first submission of a run carries the
start-up (interpreter, imports, bank, compiled references), which no number of workers shortens.

    python benchmarks/bench_batch.py [--parts 100] [--copies 20] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workload import CLI, build_bank, build_submission, compile_checkout, count_parts, peak_memory_mb


@dataclass(frozen=True)
class Timing:
    """Wall time; the CPU time of the command and every process it waited for (workers, sandboxes);
    and how many cores the whole machine kept busy meanwhile (None where /proc/stat is missing)."""

    wall: float
    cpu: float
    busy: float | None


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    bound: float
    at_most: bool

    @property
    def passed(self) -> bool:
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        return f"{self.name:<40} {self.value:6.2f}x  (target {sign} {self.bound:g}x)  {'PASS' if self.passed else 'FAIL'}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, all) clock ticks of every core since boot, from the first line of /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def timed(args: list[str]) -> Timing:
    """One CLI run; a run that fails to grade is a broken benchmark, not a slow one."""
    cpu, ticks = _children_cpu(), _machine_ticks()
    started = time.perf_counter()
    run = subprocess.run([*CLI, *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"`grade {' '.join(args)}` exited {run.returncode}:\n{run.stderr}")
    after = _machine_ticks()
    busy = None
    if ticks is not None and after is not None and after[1] > ticks[1]:
        busy = (after[0] - ticks[0]) / (after[1] - ticks[1]) * (os.cpu_count() or 1)
    return Timing(elapsed, _children_cpu() - cpu, busy)


def best(args: list[str], repeat: int) -> Timing:
    return min((timed(args) for _ in range(repeat)), key=lambda timing: timing.wall)


def load_warning() -> str:
    """Wall-time ratios need idle cores; say so when other work is running (checked before we add our own)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load < 0.5:
        return f"load average {load:.2f}"
    return f"load average {load:.2f} on {cores} cores: other work is running, wall times are unreliable"


def build_class(folder: Path, submission: Path, copies: int) -> None:
    for index in range(1, copies + 1):
        shutil.copytree(submission, folder / f"student-{index:02d}")


def amdahl(first: float, jobs1: float, jobs2: float, copies: int, workers: int = 2) -> str:
    """The best jobs1 / jobs2 possible, from the time of a class of one and of the whole class with
    --jobs 1; and what each further copy cost a worker with --jobs 2, to show where the rest went.

    Optimistic on purpose: every submission after the first is taken to cost the same, split
    perfectly between the workers, with sandboxes and the workers' own warm-up costing nothing.
    """
    if copies < 2:
        return "Amdahl bound: needs at least 2 copies"
    each = (jobs1 - first) / (copies - 1)
    share = -(-copies // workers)
    fastest = first + (share - 1) * each
    busy = (jobs2 - first) / (share - 1) if share > 1 else float("nan")
    return (f"Amdahl bound: 1 copy takes {first:.2f}s with --jobs 1 and each further copy {each * 1000:.0f} ms; "
            f"{workers} workers grading {share} copies each take at least {first:.2f} + {share - 1} x {each:.3f} = "
            f"{fastest:.2f}s, so jobs1 / jobs2 <= {jobs1 / fastest:.2f}x on this workload. Measured with --jobs 2: "
            f"each further copy took a worker {busy * 1000:.0f} ms, against {each * 1000:.0f} ms alone "
            f"(the sandboxes share the same {workers} cores, and the workers share the caches)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=100, help="parts per submission, at least (default 100)")
    parser.add_argument("--copies", type=int, default=20, help="submissions in the class (default 20)")
    parser.add_argument("--repeat", type=int, default=1, help="time every command this many times, keep the best")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temporary:
        work = Path(temporary)
        bank = work / "bank"
        copied = build_bank(bank, options.parts)
        answers = build_submission(work / "submission", copied)
        klass = work / "class"
        build_class(klass, answers.parent, options.copies)
        alone = work / "alone"
        build_class(alone, answers.parent, 1)
        parts = count_parts(bank)
        print(f"class: {options.copies} copies of a {parts}-part submission (examples/sample; the bundled bank "
              f"and {len(copied)} of its exercises again under new ids), {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        print(load_warning())
        submit_args = ["submit", str(answers), "--exercises", str(bank), "--format", "json"]
        compile_checkout()
        timed(submit_args)  # warm the disk cache of compiled references
        submit = {2: best(submit_args, options.repeat), 1: best([*submit_args, "--no-helper"], options.repeat)}
        outputs = {jobs: work / f"jobs{jobs}.csv" for jobs in (1, 2)}
        batch = {jobs: best(["batch", str(klass), "--exercises", str(bank), "--jobs", str(jobs), "--no-progress",
                             "--output", str(out)], options.repeat)
                 for jobs, out in outputs.items()}
        same = outputs[1].read_bytes() == outputs[2].read_bytes()
        first = best(["batch", str(alone), "--exercises", str(bank), "--jobs", "1", "--no-progress",
                      "--output", str(work / "alone.csv")], options.repeat)
        memory = peak_memory_mb([*CLI, "batch", str(klass), "--exercises", str(bank), "--jobs", "2", "--no-progress",
                                 "--output", str(work / "memory.csv")])

    print(f"{'command':<34} {'wall':>8} {'cpu':>8} {'cores busy':>11}")
    rows = [("grade submit (1 submission)", submit[2]), ("grade submit --no-helper", submit[1])] + [
        (f"grade batch --jobs {jobs} ({options.copies} copies)", batch[jobs]) for jobs in (1, 2)]
    for name, timing in rows:
        busy = f"{timing.busy:.2f} of {os.cpu_count()}" if timing.busy is not None else "?"
        print(f"{name:<34} {timing.wall:7.2f}s {timing.cpu:7.2f}s {busy:>11}")
    print(f"gradebooks of --jobs 1 and --jobs 2 identical: {'yes' if same else 'NO'}")
    print(f"peak memory of the largest process of grade batch --jobs 2 (main, a worker or a sandbox): {memory:.0f} MB "
          f"(target < 300 MB per worker): {'PASS' if memory < 300 else 'FAIL'}")
    print(amdahl(first.wall, batch[1].wall, batch[2].wall, options.copies))
    targets = [
        Target(f"batch({options.copies}, jobs 1) / submit --no-helper", batch[1].wall / submit[1].wall, 4.0, at_most=True),
        Target(f"batch({options.copies}, jobs 2) / submit", batch[2].wall / submit[2].wall, 4.0, at_most=True),
        Target("jobs1 / jobs2", batch[1].wall / batch[2].wall, 1.6, at_most=False),
    ]
    for target in targets:
        print(target.line())
    return 0 if same and memory < 300 and all(t.passed for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
