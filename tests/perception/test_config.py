import orjson
import pytest

from perception.config import (
    FUSION_VARIANTS,
    PRESETS,
    config_from_dict,
    config_to_dict,
    preset,
)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("variant", FUSION_VARIANTS)
def test_every_preset_round_trips_through_json(name, variant):
    cfg = preset(name, variant)
    assert cfg.variant == variant and cfg.preset == name
    back = config_from_dict(orjson.loads(orjson.dumps(config_to_dict(cfg))))
    assert back == cfg


def test_modalities_are_enums_in_code_and_plain_strings_in_config_json():
    from sensors.types import Modality

    cfg = preset("tiny", "lidar_ultrasonic")
    d = config_to_dict(cfg)
    assert [type(m) for m in d["fusion"]["modalities"]] == [str, str]  # not the enum
    assert orjson.loads(orjson.dumps(d))["fusion"]["modalities"] == ["lidar", "ultrasonic"]
    back = config_from_dict(orjson.loads(orjson.dumps(d)))
    assert back.fusion.modalities == (Modality.LIDAR, Modality.ULTRASONIC)
    assert all(type(m) is Modality for m in back.fusion.modalities)  # JSON strings -> enum
    assert f"{back.fusion.modalities[0]}" == "lidar" and str(Modality.CAMERA) == "camera"


def test_fusion_kind_is_an_enum_in_code_and_a_plain_string_in_config_json():
    from perception.config import FusionKind

    cfg = preset("tiny", "gated")
    assert type(cfg.fusion.kind) is FusionKind and cfg.fusion.kind == "gated"
    d = orjson.loads(orjson.dumps(config_to_dict(cfg)))
    assert d["fusion"]["kind"] == "gated"
    back = config_from_dict(d)
    assert type(back.fusion.kind) is FusionKind and back == cfg
    d["fusion"]["kind"] = "average"  # unknown kinds stay as written and are refused by name
    with pytest.raises(ValueError, match="unknown fusion kind 'average'"):
        config_from_dict(d)


def test_variants_use_the_right_modalities_and_fusers():
    assert preset("tiny", "camera_only").fusion.modalities == ("camera",)
    assert preset("tiny", "lidar_only").fusion.modalities == ("lidar",)
    assert preset("tiny", "lidar_ultrasonic").fusion.modalities == ("lidar", "ultrasonic")
    for v in ("mean", "weighted", "concat_conv", "gated", "serial", "late"):
        cfg = preset("tiny", v)
        assert cfg.fusion.kind == v
        assert cfg.fusion.modalities == ("camera", "lidar", "ultrasonic")


def test_tiny_grid_and_base_grid():
    tiny, base = preset("tiny"), preset("base")
    assert (tiny.grid.height, tiny.grid.width) == (64, 64)
    assert (base.grid.height, base.grid.width) == (256, 256)
    assert tiny.camera.feature_hw == (12, 22)


def test_unknown_names_and_stale_config_are_clear_errors():
    with pytest.raises(ValueError, match="unknown fusion variant"):
        preset("tiny", "bogus")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    d = config_to_dict(preset())
    d["lidar"]["voxel_m"] = 0.2
    del d["lidar"]["pillar_m"]
    with pytest.raises(ValueError, match=r"lidar.*unknown fields \['voxel_m'\].*missing.*pillar_m"):
        config_from_dict(d)
