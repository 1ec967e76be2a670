"""`grade ci-template`: ready-to-edit CI recipes that run `grade submit` where students push.

The recipes are plain text kept here, not generated, so that what a course copies is exactly
what docs/ci.md explains. Every line a course must edit carries an `EDIT` comment.
"""
from __future__ import annotations

from grader.errors import InputError

GITHUB = """\
# .github/workflows/grade.yml: grade answers.yaml on every push (made by `grade ci-template`).
# The job summary shows the grade table; grade-junit.xml is kept as an artifact; the job
# fails when the score is under FAIL_UNDER percent.
name: grade

on:
  push:
  workflow_dispatch:

env:
  FAIL_UNDER: "60"                      # EDIT: the passing percentage of your course
  GRADER: "chain-grader"                # EDIT: or "chain-grader @ git+https://github.com/YOUR-COURSE/chain-grader@v0.1.0"

jobs:
  grade:
    runs-on: ubuntu-latest
    timeout-minutes: 15
    steps:
      - uses: actions/checkout@v4

      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"

      - name: Install the grader
        run: python -m pip install "$GRADER"

      # Add `--exercises path/to/bank` to every `grade` command for a bank other than the bundled one.
      - name: Grade (job summary)
        run: grade submit answers.yaml --format markdown >> "$GITHUB_STEP_SUMMARY"

      - name: Grade (JUnit report, pass or fail)
        run: grade submit answers.yaml --format junit --output grade-junit.xml --fail-under "$FAIL_UNDER"

      - name: Keep the JUnit report
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: grade-junit
          path: grade-junit.xml
          if-no-files-found: ignore
"""

GRADESCOPE = """\
#!/usr/bin/env bash
# run_autograder: Gradescope runs this for every submission (made by `grade ci-template --kind gradescope`).
#
# Put it in the autograder zip, at the top level, beside this setup.sh:
#
#   #!/usr/bin/env bash
#   # setup.sh: runs once, when Gradescope builds the autograder image.
#   set -euo pipefail
#   apt-get update && apt-get install -y python3 python3-pip
#   python3 -m pip install chain-grader    # EDIT: or "chain-grader @ git+https://github.com/YOUR-COURSE/chain-grader@v0.1.0"
#
# To grade with your own bank, add its folder to the zip (it lands in /autograder/source)
# and set EXERCISES below.
set -uo pipefail

EXERCISES=""                            # EDIT: e.g. /autograder/source/exercises (empty: the bundled bank)
RESULTS=/autograder/results/results.json

mkdir -p /autograder/results
# Students may upload answers.yaml alone or inside a folder: take the first one found.
answers=$(find /autograder/submission -name answers.yaml -print -quit)
if [ -z "$answers" ]; then
    message="No answers.yaml was found in your submission."
else
    if [ -n "$EXERCISES" ]; then set -- --exercises "$EXERCISES"; fi
    if message=$(grade submit "$answers" "$@" --format gradescope --output "$RESULTS" 2>&1); then
        exit 0
    fi
fi
# The submission could not be graded (for example broken YAML): tell the student why, score 0.
python3 -c 'import json, pathlib, sys; pathlib.Path(sys.argv[2]).write_text(json.dumps({"score": 0, "output": sys.argv[1], "visibility": "visible"}))' \\
    "Your submission could not be graded: $message" "$RESULTS"
"""

RECIPES = {"github": GITHUB, "gradescope": GRADESCOPE}


def ci_recipe(kind: str) -> str:
    """The recipe for `kind` (github or gradescope), ready to save and edit."""
    try:
        return RECIPES[kind]
    except KeyError:
        raise InputError(f"unknown CI kind '{kind}' (choose one of: {', '.join(RECIPES)})") from None
