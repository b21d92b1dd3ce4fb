"""PyTorch eager fp32 on CPU: the reference every artifact is compared with (``source`` is a model name)."""
from __future__ import annotations

from typing import Callable

import numpy as np

NAME, TARGET = "pytorch", None


def unavailable() -> str | None:
    return None


def load(source: str, threads: int | None = None, checkpoint: str | None = None
         ) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] to the model's outputs (H, W, C), joined by name."""
    import torch

    from models import create_model, fold_batchnorm, keep_freed_memory

    keep_freed_memory()  # as training and export do: large activations reuse the heap
    if threads:
        torch.set_num_threads(threads)
    model = fold_batchnorm(create_model(source, pretrained=checkpoint is None, checkpoint=checkpoint))

    @torch.no_grad()
    def run(image: np.ndarray) -> np.ndarray:
        y = model(torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None])
        return (torch.cat(y, 1) if isinstance(y, tuple) else y)[0].permute(1, 2, 0).numpy()

    return run
