"""The caches across runs: reading a bank or a compiled variant back must give what loading or compiling it gives."""
from __future__ import annotations

import io
import pickle

import sympy
from conftest import FIXTURES, ROOT, grade, parts_of

from grader import refcache

SAMPLE = ROOT / "examples" / "sample" / "answers.yaml"


def test_reports_are_the_same_without_the_cache_with_a_cold_one_and_with_a_warm_one(tmp_path, monkeypatch):
    runs = {}
    for name, setting in (("off", "off"), ("cold", str(tmp_path / "cache")), ("warm", str(tmp_path / "cache"))):
        monkeypatch.setenv("CHAIN_GRADER_CACHE", setting)
        runs[name] = grade("submit", SAMPLE, "--format", "json")
    assert list((tmp_path / "cache" / "refs").glob("*.pickle")), "the cold run should have filled the cache"
    assert {run.code for run in runs.values()} == {0}
    assert runs["off"].out == runs["cold"].out == runs["warm"].out
    statuses = {part["status"] for exercise in runs["warm"].json()["exercises"] for part in exercise["parts"]}
    assert {"correct", "incorrect"} <= statuses, "the sample should exercise diagnosis (cached candidates) too"


def _round_trip(value: object) -> object:
    buffer = io.BytesIO()
    refcache._Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return pickle.loads(buffer.getvalue())


def test_an_expression_comes_back_exactly_as_stored_even_one_built_unevaluated():
    x = sympy.Symbol("x", real=True)
    typed = sympy.Pow(2 * x + 1, 9, evaluate=False) * sympy.sin(x**2) + sympy.log(sympy.Abs(x))
    kept = sympy.Pow(sympy.Mul(2, x), 9, evaluate=False)   # sympy itself would make this 512*x**9
    for expr in (typed, kept, sympy.exp(-x) / (1 + sympy.exp(-x)), sympy.atan2(x, 2)):
        back = _round_trip(expr)
        assert sympy.srepr(back) == sympy.srepr(expr)
        assert back == expr and hash(back) == hash(expr)
    assert sympy.srepr(pickle.loads(pickle.dumps(kept))) != sympy.srepr(kept), "sympy's own pickling re-evaluates"


def test_submit_reads_an_unchanged_bank_from_the_cache_and_notices_any_change(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAIN_GRADER_CACHE", str(tmp_path / "cache"))
    bank = tmp_path / "bank"
    bank.mkdir()
    source = (FIXTURES / "textbook" / "bank" / "power-100.yaml").read_text()
    (bank / "a.yaml").write_text(source)
    answers = tmp_path / "answers.yaml"
    answers.write_text('answers:\n  power-100: {dydx: "300x^2 (x^3-1)^99"}\n')

    def graded() -> dict:
        run = grade("submit", answers, "--exercises", bank, "--format", "json")
        assert run.code == 0, run.err
        return parts_of(run.json())[("power-100", "dydx")]

    first = graded()
    assert list((tmp_path / "cache").glob("bank-*.pickle")), "the first run should have cached the loaded bank"
    assert graded() == first
    (bank / "a.yaml").write_text(source.replace("(x^3 - 1)^100", "(x^3 - 1)^101"))
    changed = graded()
    assert first["status"] == "correct" and changed["status"] == "incorrect", "an edited exercise is graded as edited"
    (bank / "a.yaml").write_text("id: [broken\n")
    broken = grade("submit", answers, "--exercises", bank)
    assert broken.code == 2 and "a.yaml:" in broken.err and "YAML syntax" in broken.err
