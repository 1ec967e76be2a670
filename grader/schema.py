"""The JSON Schema of the exercise format, generated from the pydantic models (one source of truth)."""
from __future__ import annotations

import json

from grader.models import Exercise

SCHEMA_ID = "https://chain-grader.example/exercise.schema.json"


def schema() -> dict:
    document = Exercise.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "chain-grader exercise",
        "description": "One exercise of a chain-grader bank (see docs/authoring.md).",
        **{k: v for k, v in document.items() if k != "title"},
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
