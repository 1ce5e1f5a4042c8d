"""The EMF metrics a handler printed, read back from its captured output."""

from __future__ import annotations

import json


def metric_values(output: str, name: str) -> list[float]:
    documents = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [value for document in documents for value in document.get(name, [])]
