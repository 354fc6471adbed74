"""The driving condition of a scene and the tags of a scene description.

Scene descriptions are free text. nuScenes starts them with condition words ("Night, rain,
parking lot, ..."); our simulator writes the same kind of text followed by machine-readable
tags: ``"Rain, Highway, trucks. scenario=highway; condition=rain; events=none"``. Both are
parsed here, once, into a :class:`SceneTags`, so no caller searches the text for words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Condition(str, Enum):
    """Weather / lighting of a scene (the simulator draws one per scene)."""

    CLEAR = "clear"
    FOG = "fog"
    RAIN = "rain"
    NIGHT = "night"

    @property
    def word(self) -> str:
        """The capitalised word that starts a scene description ("Rain, ...")."""
        return self.value.capitalize()


@dataclass(frozen=True)
class SceneTags:
    """What a scene description says about its scene.

    Attributes:
        conditions: the adverse conditions named (fog, rain, night; a nuScenes scene can be
            both rainy and at night); empty for clear daylight.
        scenario: the simulator's scenario kind (``scenario=`` tag), "" for real data.
        events: the simulator's scripted events (``events=`` tag), empty for real data.

    """

    conditions: frozenset[Condition]
    scenario: str = ""
    events: tuple[str, ...] = ()


_TAG = re.compile(r"\b(scenario|condition|events)=([^;]*)")
# Words that name an adverse condition in free text (nuScenes writes "Night", "Rain").
_CONDITION_WORD = re.compile(r"\b(fog|rain|night)\b")


def format_scene_description(
    condition: Condition, summary: str, scenario: str, events: list[str]
) -> str:
    """The simulator's scene description: condition word, summary, then the tags."""
    return (
        f"{condition.word}, {summary}. scenario={scenario}; condition={condition.value}; "
        f"events={','.join(events) or 'none'}"
    )


def parse_scene_description(text: str) -> SceneTags:
    """Tags of a scene description (simulator tags when present, else condition words).

    Raises:
        ValueError: a ``condition=`` tag names no known condition.

    """
    tags = {k: v.strip() for k, v in _TAG.findall(text)}
    conditions: frozenset[Condition]
    if "condition" in tags:
        try:
            cond = Condition(tags["condition"])
        except ValueError:
            known = [c.value for c in Condition]
            raise ValueError(
                f"scene description {text!r}: condition={tags['condition']!r} is not one of "
                f"{known}"
            ) from None
        conditions = frozenset() if cond is Condition.CLEAR else frozenset({cond})
    else:
        conditions = frozenset(Condition(w) for w in _CONDITION_WORD.findall(text.lower()))
    events = tags.get("events", "none")
    return SceneTags(
        conditions=conditions,
        scenario=tags.get("scenario", ""),
        events=() if events in ("", "none") else tuple(events.split(",")),
    )
