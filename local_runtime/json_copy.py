"""A deep copy for JSON values, for the ASL interpreter's hot path.

moto's interpreter deep-copies a state's input each time a field reads it
(InputPath, Parameters, ResultPath, the entered and exited events...), its
result, and every frame's stack. A DeliverMessage run carries its page of
recipients in the state input, so ``copy.deepcopy`` (memo table, dispatch per
object) was a tenth of a fan-out's CPU. The values are JSON: dicts, lists and
immutable scalars with no shared parts a copy must keep, so a plain recursive
copy makes the same value. Anything else (an evaluation's own objects on the
stack, a dict subclass) goes to ``copy.deepcopy`` unchanged.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

__all__ = ["json_deepcopy"]

#: Immutable: a copy may be the value itself (``copy.deepcopy`` returns these as they are too,
#: except datetime, which it rebuilds equal).
_ATOMIC: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes, datetime.datetime})


def json_deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy(value)`` for JSON values, faster; same signature."""
    kind = type(value)
    if kind is dict:
        return {key: json_deepcopy(item) for key, item in value.items()}
    if kind is list:
        return [json_deepcopy(item) for item in value]
    if kind in _ATOMIC:
        return value
    return copy.deepcopy(value, memo)
