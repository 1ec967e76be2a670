"""Files we write for users to fill in: a student's answers.yaml and code stubs, an instructor's template."""
from __future__ import annotations

from pathlib import Path

from grader.bank import Entry
from grader.errors import InputError
from grader.files import write_atomic
from grader.models import KINDS

_HEADER = """\
# Your answers. Write math as you would on paper: 6x(x^2+1)^2, e^(3x), ln(x), sin^2(x), sqrt(x).
# Grade yourself with:  grade submit {name}
# Code answers go in solution.py beside this file (or <exercise-id>.py for one exercise).
"""

_CODE_HEADER = '''"""Code answers. The grader calls these functions with numpy arrays and floats.

Run `grade show EXERCISE-ID` for each exercise's conventions, and `grade submit` to grade.
"""
import numpy as np
'''


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def answers_yaml(entries: list[Entry], student: str | None, name: str) -> str:
    lines = [_HEADER.format(name=name).rstrip(), ""]
    lines.append(f"student: {_yaml_string(student)}" if student else "# student: you@example.edu")
    lines.append("answers:")
    for entry in entries:
        exercise = entry.exercise
        lines.append(f"  {exercise.id}:  # {exercise.title}")
        typed = [p for p in exercise.parts if p.answer not in ("function", "backprop")]
        for part in typed:
            hint = {"vector": "[..., ...]", "matrix": "[[..., ...], [..., ...]]", "value": "a number"}.get(part.answer, "")
            comment = f"  # {part.answer}" + (f": {hint}" if hint else "")
            lines.append(f'    {part.id}: ""{comment}')
        for part in exercise.parts:
            if part.answer in ("function", "backprop"):
                lines.append(f"    # {part.id}: code: def {part.entry}(...) in solution.py")
        if not exercise.parts:
            lines.append("    {}")
    return "\n".join(lines) + "\n"


def _stub(entry: Entry) -> list[str]:
    out = []
    for part in entry.exercise.parts:
        if part.answer == "function":
            args = ", ".join(entry.exercise.variables)
            out += [f"def {part.entry}({args}):", f'    """{entry.exercise.id} / {part.id}: the derivative at the given point."""',
                    "    return 0.0", ""]
        elif part.answer == "backprop":
            args = "params, x, y, lr" if part.update else "params, x, y"
            what = "the updated parameters" if part.update else "dLoss/dP for every parameter P"
            out += [f"def {part.entry}({args}):", f'    """{entry.exercise.id} / {part.id}: {what}, same keys and shapes as params."""',
                    "    return {key: np.zeros_like(value) for key, value in params.items()}", ""]
    return out


def write_init(entries: list[Entry], output: Path, student: str | None, force: bool) -> list[Path]:
    """answers.yaml naming every exercise; solution.py stubs when one entry name is unique, else one file per exercise."""
    written: list[Path] = []
    targets: dict[Path, str] = {output: answers_yaml(entries, student, output.name)}
    coded = [e for e in entries if any(p.answer in ("function", "backprop") for p in e.exercise.parts)]
    names = [p.entry for e in coded for p in e.exercise.parts if p.entry]
    if coded and len(names) == len(set(names)):
        body = [_CODE_HEADER]
        for entry in coded:
            body += [f"# {entry.exercise.id}: {entry.exercise.title}", *_stub(entry)]
        targets[output.parent / "solution.py"] = "\n".join(body)
    else:
        for entry in coded:
            targets[output.parent / f"{entry.exercise.id}.py"] = "\n".join([_CODE_HEADER, *_stub(entry)])
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise InputError(f"already exists (use --force to overwrite): {', '.join(map(str, existing))}")
    for path, text in targets.items():
        write_atomic(path, text)
        written.append(path)
    return written


_TEMPLATES = {
    "composite": """\
# yaml-language-server: $schema=schema.json
# (editor checking: put the schema beside this file with `grade schema -o schema.json`)
id: {id}
title: A composite derivative          # shown by `grade list`
kind: composite
tags: [chain-rule, composite]
variables: [x]                          # the free variables
params:                                 # a variant per student, seeded by (student, id)
  a: {{integers: [2, 5]}}               # inclusive range; also choices: [...], decimals: [lo, hi]
define:                                 # named expressions, in order
  u: x^2 + 1
  y: u^a
prompt: |
  Let $y = u^{{a}}$ where $u = x^2 + 1$.
parts:
  - id: dydx
    prompt: Find $dy/dx$ in terms of $x$.
    points: 2
    answer: expression
    derivative: {{of: y, wrt: x}}       # the reference comes from reference/chain.py
    partial: {{forgot-inner-derivative: 0.5}}   # optional partial credit per known mistake
tests:                                  # question tests, run by `grade validate`
  - {{part: dydx, answer: "2a x (x^2+1)^(a-1)", expect: correct}}          # tests may name params
  - {{part: dydx, answer: "a (x^2+1)^(a-1)", expect: incorrect, mistake: forgot-inner-derivative}}
""",
    "total": """\
# yaml-language-server: $schema=schema.json
# (editor checking: put the schema beside this file with `grade schema -o schema.json`)
id: {id}
title: A total derivative through two paths
kind: total
tags: [chain-rule, total-derivative]
variables: [t]
define:
  x: cos(t)
  y: sin(t)
  z: x^2 y
prompt: |
  Let $z = x^2 y$ with $x = \\cos t$ and $y = \\sin t$.
parts:
  - id: dzdt
    prompt: Find $dz/dt$. You may use $x$, $y$ and $t$.
    points: 2
    derivative: {{of: z, wrt: t}}
    allow: [x, y, t]                    # names the answer may use; definitions are substituted
tests:
  - {{part: dzdt, answer: "2x y (-sin t) + x^2 cos t", expect: correct}}
  - {{part: dzdt, answer: "x^2 cos t", expect: incorrect, mistake: missing-path}}
""",
    "gradient": """\
# yaml-language-server: $schema=schema.json
# (editor checking: put the schema beside this file with `grade schema -o schema.json`)
id: {id}
title: A gradient
kind: gradient
tags: [gradient, partial]
variables: [x, y]
define:
  f: e^(x^2 + y^2)
prompt: |
  Let $f(x, y) = e^{{x^2 + y^2}}$.
parts:
  - id: grad
    prompt: Give $\\nabla f = [\\partial f/\\partial x, \\partial f/\\partial y]$.
    points: 2
    answer: vector
    derivative: {{of: f, wrt: [x, y]}}
tests:
  - {{part: grad, answer: ["2x e^(x^2+y^2)", "2y e^(x^2+y^2)"], expect: correct}}
  - {{part: grad, answer: ["e^(x^2+y^2)", "e^(x^2+y^2)"], expect: incorrect}}
""",
    "backprop": """\
# yaml-language-server: $schema=schema.json
# (editor checking: put the schema beside this file with `grade schema -o schema.json`)
id: {id}
title: A two-layer network
kind: backprop
tags: [backprop, mlp, sigmoid, mse]
network:
  inputs: 3
  layers:
    - {{linear: 4}}                     # W1 (3x4), b1 (4,)
    - {{activation: sigmoid}}
    - {{linear: 2}}                     # W2 (4x2), b2 (2,)
  loss: mse
  batch: 5
prompt: |
  `x` has shape (batch, 3); a linear layer is `h @ W + b` with `W` of shape (in, out).
  The loss is `mean((out - y)**2)` over all elements. Write `backward(params, x, y)`
  returning the gradient of the loss for W1, b1, W2, b2 (same shapes).
parts:
  - id: grads
    answer: backprop
    entry: backward
    points: 4
tests:
  - part: grads
    expect: correct
    code: |
      import numpy as np
      def backward(params, x, y):
          z1 = x @ params["W1"] + params["b1"]
          h1 = 1 / (1 + np.exp(-z1))
          out = h1 @ params["W2"] + params["b2"]
          d_out = 2 * (out - y) / out.size
          d_h1 = d_out @ params["W2"].T
          d_z1 = d_h1 * h1 * (1 - h1)
          return {{"W1": x.T @ d_z1, "b1": d_z1.sum(0), "W2": h1.T @ d_out, "b2": d_out.sum(0)}}
""",
    "update": """\
# yaml-language-server: $schema=schema.json
# (editor checking: put the schema beside this file with `grade schema -o schema.json`)
id: {id}
title: One gradient-descent step
kind: update
tags: [gradient-descent]
variables: [w, x, y]
define:
  L: (w x - y)^2
prompt: |
  The loss of one example is $L = (w x - y)^2$. Take one gradient-descent step with
  learning rate $0.1$ from $w = 0.5$ for the example $x = 2$, $y = 3$.
parts:
  - id: step
    prompt: What is the new $w$?
    answer: value
    step: {{of: L, param: w, lr: 0.1, at: {{w: 0.5, x: 2, y: 3}}}}
tests:
  - {{part: step, answer: "1.3", expect: correct}}
  - {{part: step, answer: "-0.3", expect: incorrect, mistake: sign-error}}
""",
}


def template(kind: str, exercise_id: str) -> str:
    if kind not in _TEMPLATES:
        raise InputError(f"unknown kind '{kind}': choose one of {', '.join(KINDS)}")
    return _TEMPLATES[kind].format(id=exercise_id)


def write_template(kind: str, exercise_id: str, output: Path | None) -> Path:
    import re

    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", exercise_id):
        raise InputError(f"exercise id '{exercise_id}' must be lower-case words joined by '-' (e.g. chain-of-sines)")
    path = output or Path(f"{exercise_id}.yaml")
    if path.exists():
        raise InputError("already exists; choose another --output", str(path))
    write_atomic(path, template(kind, exercise_id))
    return path
