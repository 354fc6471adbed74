"""Scene descriptions parsed once into conditions and simulator tags."""

from __future__ import annotations

import pytest

from sensors.scene_description import (
    Condition,
    SceneTags,
    format_scene_description,
    parse_scene_description,
)


def test_simulator_description_round_trips():
    text = format_scene_description(Condition.FOG, "Highway, trucks", "highway",
                                    ["emergency_brake", "turn_left"])
    assert text == ("Fog, Highway, trucks. scenario=highway; condition=fog; "
                    "events=emergency_brake,turn_left")
    assert parse_scene_description(text) == SceneTags(
        frozenset({Condition.FOG}), "highway", ("emergency_brake", "turn_left")
    )


def test_tag_wins_over_words_and_clear_is_no_condition():
    # The summary mentions rain, the tag says clear: the tag decides.
    tags = parse_scene_description("Clear, after the rain. scenario=urban_curve; "
                                   "condition=clear; events=none")
    assert tags.conditions == frozenset()
    assert tags.events == ()


def test_nuscenes_words_match_whole_words_only():
    assert parse_scene_description("Night, rain, parking lot").conditions == {
        Condition.NIGHT, Condition.RAIN
    }
    assert parse_scene_description("NIGHT, peds").conditions == {Condition.NIGHT}
    # "train" and "drain" contain "rain" but are not rain.
    assert parse_scene_description("Wait at train crossing, drain works").conditions == set()


def test_unknown_condition_tag_names_the_text():
    with pytest.raises(ValueError, match="condition='snow'"):
        parse_scene_description("Snow. scenario=highway; condition=snow; events=none")
