"""Decode reduction shared by the training cache and inference."""

import pytest

from perception.backbones.camera_inputs import image_reduction_for


@pytest.mark.parametrize(
    ("source_hw", "network_hw", "expected"),
    [
        ((900, 1600), (256, 704), 2),  # base preset on real nuScenes: 1/4 would upsample
        ((450, 800), (96, 176), 4),  # tiny preset on the synthetic 800x450 drives
        ((900, 1600), (96, 176), 8),
        ((450, 800), (256, 704), 1),
        ((449, 799), (225, 400), 2),  # reduced decodes round up: ceil(449/2), ceil(799/2)
        ((449, 799), (226, 400), 1),
        (None, (96, 176), 1),  # size unknown: full decode
    ],
)
def test_largest_reduction_that_keeps_the_network_size(source_hw, network_hw, expected):
    assert image_reduction_for(source_hw, network_hw) == expected
