"""DPED's losses as small typed functions. Normalisations follow DPED's reference code, so that its weights
(content 10, colour 0.5, texture 1, TV 2000) keep their meaning:

- colour: squared difference of Gaussian-blurred images (21x21, sigma 3), summed per image, / 2, batch mean;
- texture: the discriminator's cross-entropy on grayscale, summed over the batch (generator wants 'DSLR');
- content: mean squared difference of VGG-19 relu5_4 features, or the substitute below;
- total variation: mean squared horizontal + vertical differences.

Content substitute (no VGG weights given; nothing is downloaded): 1 - SSIM between the two images after a 4x4
average pool. Like deep VGG features it compares local structure and contrast while tolerating the few pixels of
misalignment in real pairs. The checkpoint's meta records which content loss a run used.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

GRAY = (0.299, 0.587, 0.114)


def gaussian_kernel(size: int = 21, sigma: float = 3.0) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(ax ** 2) / (2 * sigma ** 2))
    k = torch.outer(g, g)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, size: int = 21, sigma: float = 3.0) -> torch.Tensor:
    """Per-channel Gaussian blur of (N, C, H, W), reflect-padded to keep the size."""
    c = x.shape[1]
    k = gaussian_kernel(size, sigma).to(x)[None, None].expand(c, 1, size, size)
    return F.conv2d(F.pad(x, [size // 2] * 4, mode="reflect"), k, groups=c)


def color_loss(enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = gaussian_blur(enhanced) - gaussian_blur(target)
    return diff.pow(2).sum() / (2 * enhanced.shape[0])


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma (BT.601)."""
    w = torch.tensor(GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def texture_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side: cross-entropy of the discriminator calling enhanced patches 'DSLR', summed over the batch."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits), reduction="sum")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator side: DSLR patches are 1, enhanced are 0 (mean cross-entropy)."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def ssim_content_loss(enhanced: torch.Tensor, target: torch.Tensor, pool: int = 4) -> torch.Tensor:
    """The documented substitute for the VGG content loss: 1 - SSIM of ``pool`` x ``pool``-average-pooled images
    (4: structure only; 1: full resolution, where noise counts too)."""
    a, b = F.avg_pool2d(enhanced, pool), F.avg_pool2d(target, pool)
    k = min(7, (min(a.shape[-2:]) // 2) * 2 - 1)  # odd window that fits tiny test patches
    return 1 - structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=max(k, 3), sigma=1.5)


class VGGContentLoss(nn.Module):
    """MSE of VGG-19 relu5_4 features, from a local torchvision VGG-19 state dict (``vgg19-dcbb9e9d.pth``)."""

    def __init__(self, weights: str | Path):
        super().__init__()
        from models.vgg import VGGTrunk

        self.trunk = VGGTrunk(weights, last="relu5_4")

    def train(self, mode: bool = True) -> "VGGContentLoss":
        return super().train(False)  # always frozen

    def forward(self, enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f = lambda x: self.trunk(x, ("relu5_4",))["relu5_4"]  # noqa: E731
        return F.mse_loss(f(enhanced), f(target))


# --- intrinsic decomposition and MDIE (paper 3.2) ---

def reconstruction_loss(recomposed: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """||I - F'(A, S)||^2 (mean squared error), the paper's reconstruction term."""
    return F.mse_loss(recomposed, image)


def smoothness_loss(shading: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient of the shading: light varies slowly, texture belongs to the albedo."""
    return tv_loss(shading)


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """L_adv for one side: cross-entropy of D's source map against 'real' (1) or 'fake' (0), patch mean."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def domain_classification_loss(logits: torch.Tensor, domain: int, labels: torch.Tensor) -> torch.Tensor:
    """L_cls with the mask vector: only dataset ``domain``'s attribute is known, so only its logit is scored.

    logits: (N, n_domains) from D's auxiliary classifier; labels: (N,) 1 = high quality, 0 = low quality.
    """
    return F.binary_cross_entropy_with_logits(logits[:, domain], labels.to(logits.dtype))


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """L_cyc = ||x - G(G(x, c), c')||_1."""
    return F.l1_loss(reconstructed, original)
