"""PyTorch eager fp32 on CPU: the reference every artifact is compared with."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

NAME, TARGET = "pytorch", None


def unavailable() -> str | None:
    return None


def load(source: str, threads: int, checkpoint: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    from models import create_model, keep_freed_memory

    keep_freed_memory()  # as training and export do: large activations reuse the heap
    torch.set_num_threads(threads)
    model = create_model(source, pretrained=checkpoint is None, checkpoint=checkpoint)

    @torch.no_grad()
    def run(image: np.ndarray) -> np.ndarray:
        y = model(torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None])
        return torch.cat(y, 1)[0].permute(1, 2, 0).numpy() if isinstance(y, tuple) else y[0].permute(1, 2, 0).numpy()

    return run
