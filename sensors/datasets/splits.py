"""Scene names of a split: the devkit's predefined splits or a user's ``splits.json``.

nuscenes-devkit 1.2.0 evaluates custom splits defined in ``<dataroot>/<version>/splits.json``
(``{"split name": ["scene-0001", ...]}``). The devkit silently ignores scene names the tables
do not have and asserts on a malformed file; here both are refused naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from nuscenes.utils.splits import create_splits_scenes

CUSTOM_SPLITS_FILE = "splits.json"


def custom_splits_path(dataroot: str | Path, version: str) -> Path:
    """Where the devkit looks for custom splits of ``version``."""
    return Path(dataroot) / version / CUSTOM_SPLITS_FILE


def split_scene_names(
    split: str, dataroot: str | Path, version: str, known_scenes: set[str] | None = None
) -> list[str]:
    """Scene names of ``split``: predefined (devkit) first, else from the custom splits file.

    Args:
        split: e.g. ``"mini_val"`` or a name defined in ``splits.json``.
        dataroot: the dataset root.
        version: the table folder (``splits.json`` lives in it).
        known_scenes: scene names of the tables; a custom split naming another is refused
            (not checked for the predefined splits, which name every nuScenes scene).

    Raises:
        ValueError: unknown split (naming the file looked in), malformed ``splits.json``,
            or a custom split naming scenes the tables lack.

    """
    predefined = create_splits_scenes()
    if split in predefined:
        return list(predefined[split])
    path = custom_splits_path(dataroot, version)
    if not path.is_file():
        raise ValueError(
            f"unknown split {split!r}: not a devkit split ({sorted(predefined)}) and no "
            f"custom splits file {path}"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON splits file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be an object mapping split names to scene-name lists")
    if split not in data:
        raise ValueError(
            f"unknown split {split!r}: not a devkit split and not in {path} "
            f"(it defines {sorted(data)})"
        )
    names = data[split]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: split {split!r} must be a list of scene names")
    if known_scenes is not None:
        unknown = [n for n in names if n not in known_scenes]
        if unknown:
            raise ValueError(
                f"{path}: split {split!r} names {len(unknown)} scene(s) the {version} tables "
                f"do not have, e.g. {unknown[:3]}"
            )
    return names
