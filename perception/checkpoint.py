"""Checkpoints: a folder with ``model.pt`` (state_dict), ``config.json`` and ``provenance.json``.

Weights load with ``torch.load(..., weights_only=True)`` (no pickled code runs). The config
JSON rebuilds the exact ``ModelConfig``; a config that does not match this code version, or
weights that do not match the config, raise an error naming the file and the mismatch.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import subprocess
import types
import typing
import zipfile
from pathlib import Path
from typing import Any

import orjson
import torch

from perception.config import ModelConfig, config_from_dict, config_to_dict
from perception.model import FusionModel, build_model

WEIGHTS_NAME = "model.pt"
CONFIG_NAME = "config.json"
PROVENANCE_NAME = "provenance.json"
# The shipped checkpoints live inside the package (package data), so a variant name resolves
# the same way in a checkout, an editable install and an installed wheel.
SHIPPED_CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint file exists but is unusable (empty, truncated, not weights, bad config)."""


# Ranges of config fields (inclusive bounds; None = open). Counts not listed must be >= 1.
_ZERO_ALLOWED = {"context_stages", "num_blocks", "min_radius_cells", "paint_channels"}
_UNIT_INTERVAL = {
    "score_threshold",
    "gaussian_overlap",
    "camera_dropout",
    "modality_dropout",
}
_NON_NEGATIVE_FLOATS = {"weight_decay", "moving_speed_mps"}


def _type_problem(tp: Any, value: Any, where: str) -> str | None:
    """Why ``value`` is not of the annotated type ``tp`` (None when it is)."""
    if dataclasses.is_dataclass(tp):
        return None  # checked field by field
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        for a, v in zip(items, value):
            why = _type_problem(a, v, f"{where}[]")
            if why:
                return why
        return None
    if origin in (types.UnionType, typing.Union):
        return None
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return f"{where} must be a finite number, got {value!r}"
    elif tp is str:
        ok = isinstance(value, str)
    else:
        return None
    return None if ok else f"{where} must be {tp.__name__}, got {value!r}"


def _range_problem(name: str, value: Any, where: str) -> str | None:
    """Range rules by field name (positive counts and sizes, thresholds in [0, 1])."""
    values = value if isinstance(value, tuple) else (value,)
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return None
    if name in _UNIT_INTERVAL:
        if any(not 0.0 <= v <= 1.0 for v in nums):
            return f"{where} must be in [0, 1], got {value!r}"
    elif name in _NON_NEGATIVE_FLOATS or name.endswith("_weight"):
        if any(v < 0 for v in nums):
            return f"{where} must be >= 0, got {value!r}"
    elif name in _ZERO_ALLOWED:
        if any(v < 0 for v in nums):
            return f"{where} must be >= 0, got {value!r}"
    elif name.endswith("_range_m") or name == "depth_bins_m":
        pass  # ordered pairs, checked in _checked_config
    elif any(v <= 0 for v in nums):
        return f"{where} must be > 0, got {value!r}"
    return None


def _walk_problems(cls: Any, data: Any, where: str) -> list[str]:
    """Type and range problems of the raw JSON ``data`` of config dataclass ``cls``.

    Run on the raw dict, before the dataclasses are built, so that a zero or a string never
    reaches a ``__post_init__`` (a zero ``pillar_m`` would divide by zero there).
    """
    if not isinstance(data, dict):
        return []  # config_from_dict names structural faults
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(tp):
            out += _walk_problems(tp, value, path)
            continue
        if typing.get_origin(tp) is tuple:
            if not isinstance(value, list):
                out.append(f"{path} must be a list, got {value!r}")
                continue
            item_tp = typing.get_args(tp)[0]
            if dataclasses.is_dataclass(item_tp):  # e.g. fusion.fallback: one object per expert
                for i, item in enumerate(value):
                    if not isinstance(item, dict):
                        out.append(f"{path}[{i}] must be an object, got {item!r}")
                    else:
                        out += _walk_problems(item_tp, item, f"{path}[{i}]")
                continue
            value = tuple(value)
        why = _type_problem(tp, value, path) or _range_problem(f.name, value, path)
        if why:
            out.append(why)
    return out


def _checked_config(cfg: ModelConfig) -> list[str]:
    """Problems across fields of a built config (empty: usable)."""
    problems = []
    for axis in ("x", "y", "z"):
        lo, hi = getattr(cfg.grid, f"{axis}_range_m")
        if not lo < hi:
            problems.append(f"grid.{axis}_range_m must be (min, max) with min < max, "
                            f"got {(lo, hi)}")
    d0, d1, n = cfg.camera.depth_bins_m
    if not (0 < d0 < d1) or not (isinstance(n, int) and n >= 1):
        problems.append(f"camera.depth_bins_m must be (min > 0, max > min, count >= 1), "
                        f"got {cfg.camera.depth_bins_m}")
    if cfg.reads_camera_pixels:
        stride = cfg.camera.feature_stride
        h, w = cfg.camera.image_hw
        if h % stride or w % stride:
            problems.append(f"camera.image_hw {cfg.camera.image_hw} must be multiples of the "
                            f"camera feature stride {stride}")
    return problems


def git_commit(repo: Path | None = None) -> str:
    """Current git commit of the code (``"unknown"`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).resolve().parents[1],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(
    out_dir: Path, model: torch.nn.Module, cfg: ModelConfig, provenance: dict[str, Any]
) -> Path:
    """Write weights (fp32 state_dict), config and provenance into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    tmp = out_dir / (WEIGHTS_NAME + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out_dir / WEIGHTS_NAME)  # atomic: an interrupted save never leaves half a file
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    (out_dir / CONFIG_NAME).write_bytes(orjson.dumps(config_to_dict(cfg), option=opts))
    (out_dir / PROVENANCE_NAME).write_bytes(orjson.dumps(provenance, option=opts))
    return out_dir


def resolve_checkpoint_dir(path: Path | str) -> Path:
    """The checkpoint folder for a folder or a ``model.pt`` path; clear error if absent."""
    p = Path(path)
    d = p.parent if p.is_file() else p
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (d / name).is_file():
            raise FileNotFoundError(f"checkpoint {d}: missing {name}")
    return d


def shipped_variants() -> tuple[str, ...]:
    """Names of the checkpoints shipped with the package (folders holding a ``model.pt``)."""
    if not SHIPPED_CHECKPOINTS_DIR.is_dir():
        return ()
    return tuple(sorted(
        d.name for d in SHIPPED_CHECKPOINTS_DIR.iterdir() if (d / WEIGHTS_NAME).is_file()
    ))


def resolve_checkpoint(name_or_path: Path | str) -> Path:
    """The checkpoint folder for a path (folder or ``model.pt``) or a shipped variant name.

    An existing path always wins (a local folder named ``gated`` is that folder); otherwise
    a bare name (no path separator) is looked up among the shipped checkpoints, which works
    from any working directory and in an installed package.

    Raises:
        FileNotFoundError: an existing path lacking ``model.pt`` or ``config.json`` (names
            the file), or neither a path nor a shipped variant (lists the variants).

    """
    p = Path(name_or_path)
    if p.exists():
        return resolve_checkpoint_dir(p)
    text = str(name_or_path)
    if text and "/" not in text and "\\" not in text and text not in (".", ".."):
        shipped = SHIPPED_CHECKPOINTS_DIR / text
        if (shipped / WEIGHTS_NAME).is_file():
            return resolve_checkpoint_dir(shipped)
    shipped_names = ", ".join(shipped_variants()) or f"none in {SHIPPED_CHECKPOINTS_DIR}"
    raise FileNotFoundError(
        f"checkpoint {text}: missing {WEIGHTS_NAME} (no such file or folder, nor a shipped "
        f"variant; shipped: {shipped_names})"
    )


def load_config(path: Path | str) -> ModelConfig:
    """The ``ModelConfig`` stored with a checkpoint (folder, ``model.pt`` or variant name)."""
    d = resolve_checkpoint(path)
    try:
        data = orjson.loads((d / CONFIG_NAME).read_bytes())
    except orjson.JSONDecodeError as e:
        raise CheckpointError(
            f"checkpoint {d / CONFIG_NAME}: not valid JSON ({e}; NaN and Infinity are not JSON)"
        ) from None
    problems = _walk_problems(ModelConfig, data, "")
    if not problems:
        try:
            cfg = config_from_dict(data)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {d / CONFIG_NAME}: {e}") from e
        problems = _checked_config(cfg)
    if problems:
        more = f" (+{len(problems) - 1} more: {'; '.join(problems[1:4])})" * (len(problems) > 1)
        raise CheckpointError(f"checkpoint {d / CONFIG_NAME}: {problems[0]}{more}")
    return cfg


def load_provenance(path: Path | str) -> dict[str, Any]:
    """The provenance JSON of a checkpoint (empty when absent)."""
    d = resolve_checkpoint(path)
    f = d / PROVENANCE_NAME
    return orjson.loads(f.read_bytes()) if f.is_file() else {}


def load_state_into(model: torch.nn.Module, weights: Path, cfg: ModelConfig) -> None:
    """Load a state_dict file into ``model``; mismatched keys or shapes raise naming them.

    An empty, truncated or non-tensor file raises ``CheckpointError`` naming it. The
    weights-only loader is never relaxed: a file it refuses is not loaded at all.
    """
    state = read_state_dict(weights)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        def head(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

        raise ValueError(
            f"checkpoint {weights}: weights do not match config {cfg.name!r} "
            f"(missing {len(missing)}: {head(missing)}; unexpected {len(unexpected)}: "
            f"{head(unexpected)}; shape mismatches {len(shapes)}: {head(shapes)})"
        )
    model.load_state_dict(state)


def read_state_dict(weights: Path | str) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` dict of a ``model.pt``, read with ``weights_only=True``.

    Raises:
        CheckpointError: the file is empty, truncated / not a torch file, holds objects the
            weights-only loader refuses, or is not a flat dict of tensors (names the file).

    """
    weights = Path(weights)
    size = weights.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {weights}: the weights file is empty (0 bytes)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # Say what is refused, never how to load it anyway (torch's own message does): this
        # file may carry code. Only the name of the refused object is kept from it.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it holds the Python object {found.group(1)}" if found else "it holds objects"
        raise CheckpointError(
            f"checkpoint {weights}: not a weights-only state dict ({what}, which the safe "
            "loader does not run); re-export the weights with torch.save(model.state_dict())"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"checkpoint {weights}: truncated or not a torch weights file ({size} bytes; "
            f"{type(e).__name__}: {detail})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        kind = type(state).__name__
        raise CheckpointError(
            f"checkpoint {weights}: expected a state dict (parameter name -> tensor), got "
            f"{kind}" + (" with non-tensor entries" if isinstance(state, dict) else "")
        )
    return state


def load_checkpoint(
    path: Path | str, cfg: ModelConfig | None = None
) -> tuple[FusionModel, ModelConfig]:
    """Model + config from a checkpoint folder.

    Args:
        path: the folder (or its ``model.pt``), or a shipped variant name (``"gated"``).
        cfg: expected config; when given, it must equal the stored one.

    Returns:
        ``(model in eval mode on CPU, config)``.

    """
    d = resolve_checkpoint(path)
    stored = load_config(d)
    if cfg is not None and cfg != stored:
        diff = [
            k for k, v in config_to_dict(cfg).items() if config_to_dict(stored).get(k) != v
        ]
        raise ValueError(
            f"checkpoint {d}: its config {stored.name!r} differs from the requested "
            f"{cfg.name!r} in sections {diff}"
        )
    model = build_model(stored)
    load_state_into(model, d / WEIGHTS_NAME, stored)
    return model.eval(), stored
