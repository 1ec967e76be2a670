"""The JSON Schema of the exercise format, generated from the pydantic models (one source of truth)."""
from __future__ import annotations

import json

from grader.models import Exercise

# A name, not an address: editors load the schema from a file (`grade schema -o schema.json`
# beside the exercises, named by each file's `# yaml-language-server: $schema=schema.json`).
SCHEMA_ID = "urn:chain-grader:exercise"


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
