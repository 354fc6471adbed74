"""Checkpoints: a folder with ``model.pt`` (state_dict), ``config.json`` and ``provenance.json``.

Weights load with ``torch.load(..., weights_only=True)`` (no pickled code runs). The config
JSON rebuilds the exact ``ModelConfig``; a config that does not match this code version, or
weights that do not match the config, raise an error naming the file and the mismatch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import torch

from perception.config import ModelConfig, config_from_dict, config_to_dict
from perception.model import FusionModel, build_model

WEIGHTS_NAME = "model.pt"
CONFIG_NAME = "config.json"
PROVENANCE_NAME = "provenance.json"


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


def load_config(path: Path | str) -> ModelConfig:
    """The ``ModelConfig`` stored with a checkpoint."""
    d = resolve_checkpoint_dir(path)
    try:
        data = orjson.loads((d / CONFIG_NAME).read_bytes())
        return config_from_dict(data)
    except (ValueError, TypeError, orjson.JSONDecodeError) as e:
        raise ValueError(f"checkpoint {d / CONFIG_NAME}: {e}") from e


def load_provenance(path: Path | str) -> dict[str, Any]:
    """The provenance JSON of a checkpoint (empty when absent)."""
    d = resolve_checkpoint_dir(path)
    f = d / PROVENANCE_NAME
    return orjson.loads(f.read_bytes()) if f.is_file() else {}


def load_state_into(model: torch.nn.Module, weights: Path, cfg: ModelConfig) -> None:
    """Load a state_dict file into ``model``; mismatched keys or shapes raise naming them."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
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


def load_checkpoint(
    path: Path | str, cfg: ModelConfig | None = None
) -> tuple[FusionModel, ModelConfig]:
    """Model + config from a checkpoint folder.

    Args:
        path: the folder (or its ``model.pt``).
        cfg: expected config; when given, it must equal the stored one.

    Returns:
        ``(model in eval mode on CPU, config)``.

    """
    d = resolve_checkpoint_dir(path)
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
