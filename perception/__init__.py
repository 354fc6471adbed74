"""Perception: per-modality backbones, BEV fusion, detection/planning heads, control.

``from perception import Pipeline`` is lazy: importing the package loads no torch model code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perception.pipeline import Pipeline

__all__ = ["Pipeline"]


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from perception.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'perception' has no attribute {name!r}")
