"""PyTorch eager fp32 on CPU: the reference every artifact is compared with (``source`` is a model name)."""
from __future__ import annotations

from typing import Callable

import numpy as np

NAME, TARGET = "pytorch", None


def unavailable() -> str | None:
    return None


def load(source: str, threads: int | None = None, checkpoint: str | None = None
         ) -> Callable[..., np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] to the model's outputs (H, W, C), joined by name."""
    import torch

    from models import create_model, fold_batchnorm, keep_freed_memory

    keep_freed_memory()  # as training and export do: large activations reuse the heap
    if threads:
        torch.set_num_threads(threads)
    model = fold_batchnorm(create_model(source, pretrained=checkpoint is None, checkpoint=checkpoint))

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]

    @torch.no_grad()
    def run(image: np.ndarray, thumbnail: np.ndarray | None = None) -> np.ndarray:
        """thumbnail: the whole photo's, for a tile of an image-adaptive model (default: the image's own)."""
        extra = [nchw(thumbnail)] if thumbnail is not None and model.contract.thumbnail else []
        y = model(nchw(image), *extra)
        return (torch.cat(y, 1) if isinstance(y, tuple) else y)[0].permute(1, 2, 0).numpy()

    return run
