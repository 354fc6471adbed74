"""Window resampling: the kernel against its numpy definition and against exact oracles."""

from __future__ import annotations

import numpy as np
import pytest

from perception.ops.window_resample import (
    MAX_SAMPLES,
    resample_windows,
    resample_windows_reference,
)


def _image(seed: int = 0, hw: tuple[int, int] = (45, 80), channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, channels), dtype=np.uint8)


def test_kernel_equals_the_reference_bit_for_bit():
    img = _image()
    rng = np.random.default_rng(1)
    # Enlarged (side < 16), shrunk up to and past the sample cap, partly and wholly outside.
    side = np.concatenate([rng.uniform(3, 16, 40), rng.uniform(16, 64, 40),
                           rng.uniform(64, 200, 20)])
    u0 = rng.uniform(-60, 90, len(side))
    v0 = rng.uniform(-60, 55, len(side))
    win = np.column_stack([u0, v0, side])
    got = resample_windows(img, win, 16)
    np.testing.assert_array_equal(got, resample_windows_reference(img, win, 16))
    assert got.any() and not got.all()


def test_unit_scale_window_on_pixel_centres_copies_the_pixels():
    img = _image(2)
    # u0 = 9.5: crop pixel j's centre is at column 10 + j exactly.
    got = resample_windows(img, np.array([[9.5, 4.5, 16.0]]), 16)[0]
    np.testing.assert_array_equal(got, img[5:21, 10:26])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_integer_shrink_is_the_block_mean(factor):
    img = _image(3, (100, 120))
    s = 8
    a, b = 7, 11  # window starts at the edge of pixel (b, a)
    got = resample_windows(img, np.array([[a - 0.5, b - 0.5, s * factor]]), s)[0]
    block = img[b:b + s * factor, a:a + s * factor].astype(np.float64)
    mean = block.reshape(s, factor, s, factor, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(got, np.floor(mean + 0.5).astype(np.uint8))


def test_shrink_past_the_cap_samples_a_fixed_lattice():
    img = _image(4, (200, 200))
    s, factor = 8, 10  # f = 10 > MAX_SAMPLES: 4 x 4 samples per crop pixel
    got = resample_windows(img, np.array([[-0.5, -0.5, s * factor]]), s)[0]
    # Sample a of cell i sits at i * 10 + (a + 0.5) * 2.5, rounded half up.
    pos = np.floor(np.arange(s)[:, None] * factor
                   + (np.arange(MAX_SAMPLES) + 0.5) * factor / MAX_SAMPLES).astype(int)
    samples = img[pos.reshape(-1)][:, pos.reshape(-1)].astype(np.float64)
    mean = samples.reshape(s, MAX_SAMPLES, s, MAX_SAMPLES, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(got, np.floor(mean + 0.5).astype(np.uint8))


def test_enlarging_interpolates_a_ramp_linearly():
    ramp = np.broadcast_to((np.arange(80) * 3).astype(np.uint8)[None, :, None],
                           (45, 80, 3)).copy()
    got = resample_windows(ramp, np.array([[20.0, 10.0, 8.0]]), 16)[0]
    # Crop column j's centre: column 20 + (j + 0.5) / 2, value 3 x that.
    want = np.floor(3 * (20 + (np.arange(16) + 0.5) / 2) + 0.5)
    np.testing.assert_array_equal(got[..., 1], np.broadcast_to(want, (16, 16)))


def test_outside_the_image_reads_zero_and_rows_place_the_crops():
    img = np.full((30, 40, 3), 200, np.uint8)
    out = np.full((3, 8, 8, 3), 7, np.uint8)
    win = np.array([[100.0, 100.0, 20.0], [-12.5, 4.5, 24.0]])
    resample_windows(img, win, 8, out=out, rows=np.array([2, 0]))
    assert (out[2] == 0).all()  # wholly outside
    assert (out[1] == 7).all()  # untouched row
    # The left half of the second window (columns -12 .. -1) is outside: 4 of 8 crop columns.
    assert (out[0][:, :4] == 0).all() and (out[0][:, 4:] == 200).all()


def test_bad_input_is_refused():
    img = _image()
    with pytest.raises(ValueError, match="uint8"):
        resample_windows(img.astype(np.float32), np.array([[0.0, 0.0, 8.0]]), 8)
    with pytest.raises(ValueError, match="3"):
        resample_windows(_image(channels=4), np.array([[0.0, 0.0, 8.0]]), 8)
    with pytest.raises(ValueError, match="side > 0"):
        resample_windows(img, np.array([[0.0, 0.0, 0.0]]), 8)
    with pytest.raises(ValueError, match="rows"):
        resample_windows(img, np.array([[0.0, 0.0, 8.0]]), 8,
                         out=np.zeros((1, 8, 8, 3), np.uint8), rows=np.array([1]))
