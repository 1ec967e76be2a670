"""`pip install .` (not editable): the bank ships, code runs, and the installed grader stays unreadable."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT

ATTACK = '''
def dydx(x):
    return float(len(open(GRADE_PY).read()))
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """A virtual environment with the project installed as a user would, dependencies from this one."""
    home = tmp_path_factory.mktemp("installed")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(home / "venv")
    python = home / "venv" / "bin" / "python"
    build = home / "build"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(build), str(ROOT)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for item in build.iterdir():
        item.rename(site / item.name)
    return python, site


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", "import cli; cli.main()", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_the_installed_package_grades_the_sample_with_its_code(installed: tuple[Path, Path], tmp_path: Path):
    done = run(installed[0], "submit", str(ROOT / "examples/sample/answers.yaml"), "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parts = {(e["id"], p["id"]): p for e in json.loads(done.stdout)["exercises"] for p in e["parts"]}
    assert len(parts) > 60
    assert parts[("mlp-sigmoid-mse", "grads")]["status"] == "correct"
    assert parts[("gaussian-in-code", "code")]["status"] == "correct"


def test_student_code_cannot_read_the_installed_grader(installed: tuple[Path, Path], tmp_path: Path):
    python, site = installed
    assert (site / "grader" / "grade.py").is_file()
    (tmp_path / "solution.py").write_text(f"GRADE_PY = {str(site / 'grader' / 'grade.py')!r}\n" + ATTACK)
    (tmp_path / "answers.yaml").write_text("answers: {}\n")
    done = run(python, "submit", str(tmp_path / "answers.yaml"), "--only", "gaussian-in-code", "--format", "json",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    code = json.loads(done.stdout)["exercises"][0]["parts"][1]
    assert code["status"] == "error"
    assert "forbids reading" in code["feedback"]
