"""template.yaml as CloudFormation reads it, through the local runtime's loader (short tags such as
!Ref, !GetAtt, !Sub in their long form), and a function's properties as SAM resolves them: what the
infrastructure tests assert on."""

from __future__ import annotations

from typing import Any

from local_runtime.template import TEMPLATE_PATH, load_template

TEMPLATE = load_template(TEMPLATE_PATH.read_text(encoding="utf-8"))
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE.get("Globals", {}).get("Function", {})


def props(logical_id: str) -> dict[str, Any]:
    properties = RESOURCES[logical_id]["Properties"]
    assert isinstance(properties, dict)
    return properties


def function_setting(function: str, name: str) -> Any:
    """A function property as SAM resolves it: the function's own value, else the Globals one."""
    return props(function).get(name, GLOBAL_FUNCTION.get(name))
