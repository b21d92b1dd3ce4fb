"""PSNR / SSIM on image tensors (torchmetrics), used by validation and evaluation."""
from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


@torch.no_grad()
def psnr_ssim(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(N, 3, H, W) in [0, 1] -> (PSNR dB, SSIM) of the batch (outputs clipped to [0, 1] as when saved)."""
    pred = pred.clamp(0, 1)
    return (float(peak_signal_noise_ratio(pred, target, data_range=1.0)),
            float(structural_similarity_index_measure(pred, target, data_range=1.0)))
