"""Model configuration as code: nested frozen dataclasses, named presets, JSON round-trip.

``preset("tiny", "concat_conv")`` gives the CPU-sized model with the concat+conv fuser;
``preset("base", "gated")`` the GPU-sized one with the gated fuser. A checkpoint stores
``config_to_dict(cfg)`` as JSON beside its weights; ``config_from_dict`` rebuilds it and refuses
unknown or missing fields with an error that names them.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any

from sensors.types import DETECTION_CLASSES, Modality, NameEnum

# Modality order of every presence mask (the order of sensors.types.Modality).
MODALITY_ORDER: tuple[Modality, ...] = tuple(Modality)



class FusionKind(NameEnum):
    """How the modalities meet (``FusionConfig.kind``; ``perception.fusion.build_fuser``)."""

    MEAN = "mean"
    WEIGHTED = "weighted"
    CONCAT_CONV = "concat_conv"
    GATED = "gated"
    SERIAL = "serial"
    LATE = "late"
    # A cascade, not a BEV fuser: LiDAR detections re-scored by a network on full-resolution
    # camera crops (``perception.refine``).
    REFINE = "refine"


FUSION_VARIANTS: tuple[str, ...] = (
    "mean",
    "weighted",
    "concat_conv",
    "gated",
    "serial",
    "late",
    "camera_only",
    "lidar_only",
    "lidar_ultrasonic",
    "lidar_camera_refine",
)
PRESETS: tuple[str, ...] = ("tiny", "base")


@dataclass(frozen=True)
class GridConfig:
    """The BEV grid every modality is pooled onto (ego frame, x forward, y left).

    Row index = y, column index = x: cell (iy, ix) covers
    ``[x_min + ix * cell_m, x_min + (ix + 1) * cell_m)`` and likewise for y.
    """

    x_range_m: tuple[float, float] = (-51.2, 51.2)
    y_range_m: tuple[float, float] = (-51.2, 51.2)
    z_range_m: tuple[float, float] = (-5.0, 3.0)
    cell_m: float = 1.6

    @property
    def width(self) -> int:
        """Number of cells along x (columns)."""
        return round((self.x_range_m[1] - self.x_range_m[0]) / self.cell_m)

    @property
    def height(self) -> int:
        """Number of cells along y (rows)."""
        return round((self.y_range_m[1] - self.y_range_m[0]) / self.cell_m)

    @property
    def bev_range_m(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` metres."""
        return (self.x_range_m[0], self.y_range_m[0], self.x_range_m[1], self.y_range_m[1])


@dataclass(frozen=True)
class CameraConfig:
    """Camera branch: ResNet-style CNN + neck + lift-splat view transform.

    Attributes:
        image_hw: network input size; images are resized to it and K scaled to match.
        stem_channels / stage_channels: widths of the stem and the residual stages; every
            stage halves the resolution, the stem divides by 4.
        feature_stride: stride of the feature map the depth head reads (4 * 2**(stages-1)).
        feature_channels: C of the lifted context features.
        depth_bins_m: (min, max, num) depth bin centres along the camera ray, metres.
        pool_impl: ``"kernel"`` (perception.ops.bev_pool through an autograd Function) or
            ``"torch"`` (index_add_). Both give the same numbers and gradients.

    """

    image_hw: tuple[int, int] = (96, 176)
    stem_channels: int = 16
    stage_channels: tuple[int, ...] = (24, 32)
    feature_channels: int = 24
    depth_bins_m: tuple[float, float, int] = (2.0, 50.0, 24)
    pool_impl: str = "kernel"

    @property
    def feature_stride(self) -> int:
        """Image pixels per feature pixel."""
        return 4 * 2 ** (len(self.stage_channels) - 1)

    @property
    def feature_hw(self) -> tuple[int, int]:
        """Feature-map size (h, w)."""
        s = self.feature_stride
        return (self.image_hw[0] // s, self.image_hw[1] // s)


@dataclass(frozen=True)
class LidarConfig:
    """LiDAR branch: pillars -> pillar feature net -> scatter -> 2D CNN.

    Attributes:
        pillar_m: pillar edge (x and y), metres; a multiple-divisor of the BEV cell so that
            ``cell_m / pillar_m`` is the integer stride of the first 2D conv.
        max_points_per_pillar / max_pillars: hard-voxelization caps (per sample).
        point_channels: input point columns used (x, y, z, intensity, time_lag_s).
        pfn_channels: pillar feature net width.
        bev_channels: width of the 2D CNN.
        num_blocks: residual blocks at BEV resolution.
        context_stages: stride-2 stages of the context path (each a strided and a plain
            residual block), merged back at BEV resolution. Velocity needs the whole motion
            trail of the accumulated sweeps in view: 10 sweeps span 0.45 s, 11 m at highway
            speed, beyond what one stage sees at 1.6 m cells.

    """

    pillar_m: float = 0.8
    max_points_per_pillar: int = 12
    max_pillars: int = 12000
    point_channels: int = 5
    pfn_channels: int = 16
    bev_channels: int = 32
    num_blocks: int = 1
    context_stages: int = 2


@dataclass(frozen=True)
class UltrasonicConfig:
    """Ultrasonic branch: the near-field free/occupied raster -> small CNN."""

    channels: int = 8


# Sensors whose loss changes which path a fused model runs (perception.experts); the
# ultrasonic near-field raster is an extra that every path masks on its own.
PRINCIPAL_MODALITIES: tuple[Modality, ...] = (Modality.CAMERA, Modality.LIDAR)
# Single-sensor variants that can be kept inside a fused model as its fallback experts.
EXPERT_VARIANTS: tuple[str, ...] = ("camera_only", "lidar_only", "lidar_ultrasonic")


@dataclass(frozen=True)
class FallbackExpertConfig:
    """A single-sensor model kept inside a fused one and run when a partner sensor is gone.

    It serves the samples whose present principal sensors (camera, LiDAR) are exactly its
    own (``perception.experts``). Its weights live in the fused checkpoint under
    ``experts.<variant>.``, except the branches named in ``shared``: those equal the host's
    (``tools/compose_fallback.py`` compares the tensors), so it reads the host's BEV map.

    Attributes:
        variant: the model it was composed from, one of ``EXPERT_VARIANTS``.
        shared: branches (modality names) whose map it takes from the host.

    """

    variant: str
    shared: tuple[str, ...] = ()


@dataclass(frozen=True)
class FusionConfig:
    """How the per-modality BEV maps become one.

    Attributes:
        kind: ``mean`` | ``weighted`` | ``concat_conv`` | ``gated`` | ``serial`` | ``late`` |
            ``refine``.
        modalities: modalities the model uses, a subset of ``MODALITY_ORDER`` (in that order).
        channels: C of the fused map (and of every per-modality projection).
        per_channel_weights: ``weighted`` only: one softmax weight per modality and channel.
        paint_channels: ``serial`` only: camera feature channels painted onto each point.
        fallback: experts run instead of the fused path when a principal sensor is missing
            (empty: the fused path always runs).
        missing_as_empty: modalities whose absence the fused path reads as present with an
            empty input (only ``ultrasonic``: an empty near-field raster, no free and no
            occupied evidence; what most of the grid holds anyway). Without it, a fuser
            trained mostly with the ultrasonic present renormalises over one modality fewer.

    """

    kind: FusionKind = FusionKind.CONCAT_CONV
    modalities: tuple[Modality, ...] = MODALITY_ORDER
    channels: int = 32
    per_channel_weights: bool = False
    paint_channels: int = 8
    fallback: tuple[FallbackExpertConfig, ...] = ()
    missing_as_empty: tuple[Modality, ...] = ()


@dataclass(frozen=True)
class RefineConfig:
    """Camera refinement of first-stage detections (``FusionKind.REFINE``, ``perception.refine``).

    Each proposal (a decoded LiDAR detection) is projected into the camera that sees it best;
    a square window around its projected corners, cut from the image decoded at no less than
    ``source_hw`` (800x450 for the synthetic rig, half of nuScenes' 1600x900) and resampled to
    ``crop_px``, goes through a small CNN that predicts the ten classes and background. The
    refined class scores combine the first stage's and the camera's with non-negative learned
    weights (``perception.refine.network.ScoreCombiner``): monotone in both, and a box no
    camera sees keeps its first-stage label and score.

    Attributes:
        source_hw: smallest decoded image size (h, w) the crops are cut from; the dataset's
            JPEG decode reduction is chosen from it as for a camera branch's input size.
        crop_px: side of the network input crop, pixels.
        margin: the window is the projected box's larger side times ``1 + margin``.
        min_window_px: smallest window side in the source image (far boxes), pixels.
        patch_px: the crop CNN's stem: a ``patch_px`` x ``patch_px`` convolution with that
            stride (a patchify stem: on one CPU thread, 100 crops through a strided 3x3 stem
            and two full-resolution stages took 10-25 ms, through this one 6-7 ms).
        channels: widths of the stem and of the 3x3 stages after it (a 2x2 max-pool between
            consecutive 3x3 stages).
        hidden: width of the classifier's hidden layer.
        max_proposals: highest-scoring proposals refined per frame; the rest pass unchanged.
        classes: the classes the refinement may decide between: a proposal the first stage
            labels with one of them can be re-labelled as another of them (taking that
            class group's box from the first stage's regression at its cell) or re-scored;
            every other proposal passes unchanged. The small objects the LiDAR confuses
            (at 1.6 m cells a pedestrian and a cone are one or two cells of points) and a
            camera tells apart by shape and colour; vehicles stay the LiDAR's: refining all
            ten classes (round 1, val) cost car -0.018 and bus -0.032 AP.

    """

    source_hw: tuple[int, int] = (450, 800)
    crop_px: int = 32
    margin: float = 0.25
    min_window_px: float = 12.0
    patch_px: int = 4
    channels: tuple[int, ...] = (24, 32, 48)
    hidden: int = 64
    max_proposals: int = 100
    classes: tuple[str, ...] = ("pedestrian", "traffic_cone", "bicycle", "motorcycle",
                                "barrier")


# CenterPoint's nuScenes task groups: classes that share a heatmap head and an NMS pass.
DEFAULT_CLASS_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car",),
    ("truck", "construction_vehicle"),
    ("bus", "trailer"),
    ("barrier",),
    ("motorcycle", "bicycle"),
    ("pedestrian", "traffic_cone"),
)


@dataclass(frozen=True)
class DetectionConfig:
    """CenterPoint-style detection head and decoder.

    Attributes:
        class_groups: heatmap groups, classes named as in ``DETECTION_CLASSES``.
        head_channels: width of the shared 3x3 conv before the per-group outputs.
        branch_convs: a 3x3 conv of its own for the heatmap and the regression branch (off in
            ``tiny``: a third of the head's compute for little gain at 1.6 m cells).
        max_objects: training targets per group and sample.
        min_radius_cells: smallest Gaussian radius drawn on the heatmap.
        gaussian_overlap: CornerNet overlap used to size the Gaussian.
        top_k: candidates per group at decode time.
        score_threshold: drop decoded boxes below this confidence.
        nms_radius_m: circle-NMS radius per group (metres; 0 = no NMS for that group).
        max_detections: cap on boxes per frame after NMS (the nuScenes limit is 500).
        moving_speed_mps: speed above which an object gets a moving attribute.

    """

    class_groups: tuple[tuple[str, ...], ...] = DEFAULT_CLASS_GROUPS
    head_channels: int = 32
    branch_convs: bool = False
    max_objects: int = 128
    min_radius_cells: int = 1
    gaussian_overlap: float = 0.1
    top_k: int = 64
    score_threshold: float = 0.05
    nms_radius_m: tuple[float, ...] = (4.0, 6.0, 6.0, 1.0, 0.85, 0.5)
    max_detections: int = 300
    moving_speed_mps: float = 0.5


@dataclass(frozen=True)
class PlanningConfig:
    """Waypoint head: fused BEV + command (+ ego status) -> 6 waypoints over 3 s."""

    num_waypoints: int = 6
    dt_s: float = 0.5
    hidden: int = 64
    use_ego_status: bool = True


@dataclass(frozen=True)
class LossConfig:
    """Task weighting: fixed weights, or learned homoscedastic uncertainty (Kendall et al.)."""

    learned_uncertainty: bool = False
    heatmap_weight: float = 1.0
    regression_weight: float = 0.25
    planning_weight: float = 0.5
    # Depth supervision of the camera lift from the LiDAR (BEVDepth): without it the depth
    # distribution only learns from the detection loss, far too weak a signal for a small
    # model trained briefly. 0 turns it off.
    depth_weight: float = 0.5
    # Code weight (per m/s of error) of the two velocity targets in the box regression; the
    # others weigh 1. CenterPoint uses 0.2 over 20 epochs; in our short CPU runs 0.5 gave the
    # best NDS of {0.2, 0.5, 1.0} (mAVE 1.36 / 0.91 / 0.73 m/s, mAP 0.47 / 0.44 / 0.41, one seed).
    velocity_weight: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the CLI can override them)."""

    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-2
    grad_clip: float = 10.0
    modality_dropout: tuple[float, float, float] = (0.15, 0.15, 0.15)
    camera_dropout: float = 0.05


@dataclass(frozen=True)
class ModelConfig:
    """The whole model, from sensor inputs to heads."""

    name: str = "tiny_concat_conv"
    preset: str = "tiny"
    variant: str = "concat_conv"
    grid: GridConfig = field(default_factory=GridConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    ultrasonic: UltrasonicConfig = field(default_factory=UltrasonicConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    def uses(self, modality: Modality | str) -> bool:
        """True when this model reads ``modality`` (loads it, scores it, is hurt by its loss)."""
        return modality in self.fusion.modalities

    def has_branch(self, modality: Modality | str) -> bool:
        """True when this model has a BEV branch for ``modality`` (``refine`` reads its
        cameras through crops, not through a camera branch).
        """
        return self.uses(modality) and not (
            modality == Modality.CAMERA and self.fusion.kind == FusionKind.REFINE
        )

    @property
    def reads_camera_pixels(self) -> bool:
        """True when a BEV branch of this model reads the camera images at
        ``camera.image_hw``: its own camera branch or a fallback expert's (``refine`` has no
        camera branch, its ``camera_only`` expert has).
        """
        return self.has_branch(Modality.CAMERA) or any(
            Modality.CAMERA in _variant_fusion(e.variant, self.fusion).modalities
            for e in self.fusion.fallback
        )

    @property
    def camera_source_hw(self) -> tuple[int, int]:
        """Smallest decoded camera image (h, w) the model needs: the camera branch's input
        size, or the refinement crops' source size.
        """
        if self.fusion.kind == FusionKind.REFINE:
            return self.refine.source_hw
        return self.camera.image_hw

    def __post_init__(self) -> None:
        if self.fusion.kind not in tuple(FusionKind):
            raise ValueError(f"ModelConfig {self.name}: unknown fusion kind {self.fusion.kind!r}")
        bad = [m for m in self.fusion.modalities if m not in MODALITY_ORDER]
        if bad or not self.fusion.modalities:
            raise ValueError(f"ModelConfig {self.name}: bad modalities {self.fusion.modalities}")
        principal = set(PRINCIPAL_MODALITIES)
        if self.fusion.kind == FusionKind.SERIAL and not principal <= set(self.fusion.modalities):
            raise ValueError("serial fusion paints camera features onto LiDAR: needs both")
        # The cascade's own path is the LiDAR model (it serves a sample without cameras
        # unrefined), so its one expert is the camera model: no branch of the host to share.
        if self.fusion.kind == FusionKind.REFINE and (
            set(self.fusion.modalities) != principal
            or any(e.variant != "camera_only" or e.shared for e in self.fusion.fallback)
        ):
            raise ValueError(f"ModelConfig {self.name}: refine re-scores LiDAR detections with "
                             "camera crops: modalities camera and lidar, and at most a "
                             "camera_only fallback expert (LiDAR missing) sharing no branch")
        for e in self.fusion.fallback:
            own = _variant_fusion(e.variant, self.fusion).modalities  # unknown names fail here
            if e.variant not in EXPERT_VARIANTS or not set(own) < set(self.fusion.modalities):
                raise ValueError(f"ModelConfig {self.name}: fallback expert {e.variant!r} must be "
                                 f"one of {EXPERT_VARIANTS} using fewer of its modalities "
                                 f"{self.fusion.modalities}")
            if not set(e.shared) <= set(own):
                raise ValueError(f"ModelConfig {self.name}: fallback expert {e.variant!r} shares "
                                 f"{e.shared}, not all among its modalities {own}")
        bad = [m for m in self.fusion.missing_as_empty
               if m != Modality.ULTRASONIC or m not in self.fusion.modalities]
        if bad:
            raise ValueError(f"ModelConfig {self.name}: missing_as_empty {bad}: only a used "
                             "ultrasonic can be read as empty (the principal sensors have "
                             "fallback experts)")
        experts = [e.variant for e in self.fusion.fallback]
        if len(experts) != len(set(experts)):
            raise ValueError(f"ModelConfig {self.name}: fallback experts repeat: {experts}")
        known = set(DETECTION_CLASSES)
        grouped = [c for g in self.detection.class_groups for c in g]
        if set(grouped) - known or len(grouped) != len(set(grouped)):
            raise ValueError(f"ModelConfig {self.name}: bad class groups {grouped}")
        if len(self.detection.nms_radius_m) != len(self.detection.class_groups):
            raise ValueError("DetectionConfig: one nms_radius_m per class group")
        ratio = self.grid.cell_m / self.lidar.pillar_m
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError("LidarConfig.pillar_m must divide GridConfig.cell_m")


def _tiny() -> ModelConfig:
    return ModelConfig()


def _base() -> ModelConfig:
    # GPU scale: nuScenes-like image size and a 0.4 m grid, wider everywhere.
    return ModelConfig(
        preset="base",
        grid=GridConfig(cell_m=0.4),
        camera=CameraConfig(
            image_hw=(256, 704),
            stem_channels=32,
            stage_channels=(64, 128, 256),
            feature_channels=80,
            depth_bins_m=(1.0, 60.0, 59),
        ),
        lidar=LidarConfig(
            pillar_m=0.2,
            max_points_per_pillar=20,
            max_pillars=60000,
            pfn_channels=64,
            bev_channels=128,
            num_blocks=4,
            context_stages=3,  # 0.4 m cells: three halvings to see an 11 m trail
        ),
        ultrasonic=UltrasonicConfig(channels=16),
        fusion=FusionConfig(channels=128, paint_channels=32),
        detection=DetectionConfig(
            head_channels=64, branch_convs=True, top_k=200, max_objects=500, min_radius_cells=2
        ),
        planning=PlanningConfig(hidden=256),
        train=TrainConfig(batch_size=8, lr=1e-3),
    )


def _variant_fusion(variant: str, fusion: FusionConfig) -> FusionConfig:
    all3 = MODALITY_ORDER
    match variant:
        case "mean" | "weighted" | "concat_conv" | "gated" | "serial" | "late":
            return replace(fusion, kind=FusionKind(variant), modalities=all3)
        case "camera_only":
            return replace(fusion, kind=FusionKind.MEAN, modalities=(Modality.CAMERA,))
        case "lidar_only":
            return replace(fusion, kind=FusionKind.MEAN, modalities=(Modality.LIDAR,))
        case "lidar_ultrasonic":
            return replace(
                fusion, kind=FusionKind.CONCAT_CONV,
                modalities=(Modality.LIDAR, Modality.ULTRASONIC),
            )
        case "lidar_camera_refine":  # lidar_only's layers, then camera crops re-score
            return replace(
                fusion, kind=FusionKind.REFINE, modalities=(Modality.CAMERA, Modality.LIDAR)
            )
        case _:
            raise ValueError(f"unknown fusion variant {variant!r}; choose from {FUSION_VARIANTS}")


def with_variant(cfg: ModelConfig, variant: str) -> ModelConfig:
    """``cfg`` (any preset, any sizes) as fusion variant ``variant``, without fallback experts.

    A fallback expert is built from its host's config this way, so it matches the
    single-sensor checkpoint trained with the same preset.
    """
    fusion = replace(_variant_fusion(variant, cfg.fusion), fallback=(), missing_as_empty=())
    return replace(cfg, name=f"{cfg.preset}_{variant}", variant=variant, fusion=fusion)


def preset(name: str = "tiny", variant: str = "concat_conv") -> ModelConfig:
    """A named preset (``tiny`` for CPU, ``base`` for GPU) with one of ``FUSION_VARIANTS``.

    Args:
        name: ``"tiny"`` or ``"base"``.
        variant: fusion variant, e.g. ``"gated"`` or ``"lidar_only"``.

    Returns:
        The frozen model configuration.

    """
    match name:
        case "tiny":
            cfg = _tiny()
        case "base":
            cfg = _base()
        case _:
            raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")
    return with_variant(replace(cfg, preset=name), variant)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass (tuples become lists, enums their
    ``.value``, so config.json holds the plain strings).
    """

    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, list | tuple):
            return type(v)(plain(x) for x in v)
        return v

    return dataclasses.asdict(cfg, dict_factory=lambda kv: {k: plain(v) for k, v in kv})


# Fields a config.json written before they existed may lack (they take their default).
_ADDED_FIELDS: dict[str, set[str]] = {"FusionConfig": {"fallback", "missing_as_empty"},
                                      "ModelConfig": {"refine"}}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ValueError(f"config field {where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[]") for v in value)
        if len(args) != len(value):
            raise ValueError(f"config field {where}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[]") for a, v in zip(args, value))
    if tp is float and isinstance(value, int):
        return float(value)
    if tp in (Modality, FusionKind) and value in tp._value2member_map_:
        return tp(value)  # an unknown name stays as written: validation names it
    if origin in (types.UnionType, typing.Union):
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section {where or cls.__name__}: expected an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    # A field added after checkpoints were shipped, whose default is the old behaviour.
    missing = sorted(names - set(data) - _ADDED_FIELDS.get(cls.__name__, set()))
    if unknown or missing:
        raise ValueError(
            f"config section {where or cls.__name__} ({cls.__name__}) does not match this "
            f"version of drivefuse: unknown fields {unknown}, missing fields {missing}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a ``ModelConfig`` from ``config_to_dict`` output.

    Raises:
        ValueError: naming the section and the fields that do not match this code version.

    """
    return _from_dict(ModelConfig, data, "")
