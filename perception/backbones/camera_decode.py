"""Camera images decoded at the reduction the model was trained on, whatever the caller used.

The training cache decodes every JPEG at ``image_reduction_for(stored size, network size)``
(libjpeg's DCT-scaled 1/2, 1/4, 1/8 decode), then resizes to the network input. A full-size
decode resized to the same size gives other pixels, so a model fed a sample read at another
reduction sees images it was never trained on. ``decoded_like_training`` decodes such images
again from their file at the training reduction, so that
``Pipeline.from_checkpoint(...).run(ds.load_sample(t))`` sees the training pixels with any
dataset reduction. A sample already at the training reduction (``eval.runner`` decodes so) is
returned as it is, at no cost.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PIL import Image

from calibration.camera import decoded_intrinsics
from calibration.sample import CameraView, SyncedSample
from perception.backbones.camera_inputs import image_reduction_for
from perception.config import ModelConfig
from sensors.readers import read_camera_image
from sensors.types import CameraImage, Modality

_JPEG_MAGIC = b"\xff\xd8"


def _stored_hw(image: CameraImage, reduction: int) -> tuple[int, int]:
    """(height, width) of the image as stored in its file."""
    if reduction == 1:
        return image.height, image.width
    # A reduced decode has ceil(size / r) pixels: the stored size is read from the file's
    # header (PIL opens lazily, no pixel is decoded).
    with Image.open(image.source) as f:
        width, height = f.size
    return int(height), int(width)


def training_decode_reduction(image: CameraImage, cfg: ModelConfig) -> int:
    """The decode reduction ``cfg``'s training cache used for an image of this stored size."""
    current = round(1.0 / image.scale)
    if current > 1:
        # A 1/r decode of h rows was stored with (h - 1) * r + 1 .. h * r rows. The choice
        # only grows with the stored size, so when both ends agree the file is not opened
        # (the usual case: a sample already decoded like training).
        h, w = image.height, image.width
        lo = image_reduction_for(((h - 1) * current + 1, (w - 1) * current + 1),
                                 cfg.camera_source_hw)
        if lo == image_reduction_for((h * current, w * current), cfg.camera_source_hw):
            return lo
    return image_reduction_for(_stored_hw(image, current), cfg.camera_source_hw)


def _redecoded(image: CameraImage, reduction: int) -> CameraImage:
    """``image`` decoded again from its file at ``reduction``, with the matching intrinsics."""
    current = round(1.0 / image.scale)
    intrinsics = image.intrinsics
    if current != 1:
        # Back to the stored grid: the reader scaled K by the grid it produced, exactly 1/r
        # for a JPEG, (decoded / stored) per axis for any other format.
        with open(image.source, "rb") as f:
            is_jpeg = f.read(2) == _JPEG_MAGIC
        stored_h, stored_w = _stored_hw(image, current)
        scale_xy = (
            (float(current), float(current))
            if is_jpeg
            else (stored_w / image.width, stored_h / image.height)
        )
        intrinsics = decoded_intrinsics(intrinsics, scale_xy)
    return read_camera_image(
        image.source,
        intrinsics,
        image.channel,
        image.timestamp_us,
        reduction,
        image.distortion if image.distortion.size else None,
    )


def decoded_like_training(sample: SyncedSample, cfg: ModelConfig) -> SyncedSample:
    """``sample`` with every camera at the decode reduction ``cfg`` was trained on.

    A camera whose image came from a file (``CameraImage.source``) at another reduction is
    decoded again from that file; images built in code (no source) and models without
    cameras are left alone. Pixels changed after decoding (a corruption) survive only at the
    training reduction: decode at it first (``eval.runner.decode_like_training``), then
    corrupt.

    Returns:
        ``sample`` itself when nothing needed decoding, else a copy with the new views.

    """
    if not cfg.uses(Modality.CAMERA):
        return sample
    views: list[CameraView | None] = []
    changed = False
    for view in sample.cameras:
        image = view.image if view is not None else None
        if view is None or image is None or not image.source or not Path(image.source).is_file():
            views.append(view)
            continue
        want = training_decode_reduction(image, cfg)
        if want == round(1.0 / image.scale):
            views.append(view)
            continue
        views.append(replace(view, image=_redecoded(image, want)))
        changed = True
    return replace(sample, cameras=tuple(views)) if changed else sample
