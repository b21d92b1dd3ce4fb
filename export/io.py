"""The artifacts' I/O rule, shared by the exporters and the benchmark runners (imports numpy only).

A model with several outputs (the intrinsic decomposer: albedo, shading) is compared, scored and tiled as one
array: its outputs concatenated on the channel axis in name order, which is also the order the model's contract
lists them in. A single output is returned as it is.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def join_outputs(outputs: Mapping[str, np.ndarray], axis: int = -1) -> np.ndarray:
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return np.concatenate([outputs[k] for k in sorted(outputs)], axis=axis)
