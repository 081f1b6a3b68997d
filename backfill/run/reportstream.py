"""The stream an apply sends its reporter (reporting.py -> reporter_child.py): JSON lines.

Each message is one line (`begin`, `group_end`, `end`, ...), except the instances' events: thousands
come each second on a run of small partitions, so consecutive events of one run share a `logs` line
and the reporter hands its flow each of them as a `log` message, in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["InstanceEvent", "encode_stream", "expand"]


class InstanceEvent(NamedTuple):
    """An instance started or ended, as the scheduler's observer saw it."""

    key: str  # the run
    group: int
    level: str
    msg: str
    ended: bool
    t: float


def encode_stream(messages: Sequence[Mapping[str, Any] | InstanceEvent]) -> bytes:
    out: list[str] = []
    events: list[InstanceEvent] = []

    def flush() -> None:
        if events:
            out.append(json.dumps({"op": "logs", "key": events[0].key, "items": [list(e[1:]) for e in events]},
                                  separators=(",", ":")))
            events.clear()

    for m in messages:
        if isinstance(m, InstanceEvent):
            if events and events[0].key != m.key:
                flush()
            events.append(m)
        else:
            flush()
            out.append(json.dumps(m, separators=(",", ":")))
    flush()
    return ("\n".join(out) + "\n").encode()


def expand(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The messages one decoded line holds."""
    if message.get("op") != "logs":
        yield message
        return
    for group, level, msg, ended, t in message["items"]:
        yield {"op": "log", "key": message["key"], "group": group, "level": level, "msg": msg, "ended": ended,
               "t": t}
