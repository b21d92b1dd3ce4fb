"""LeakyReLUs that an int8 file runs as ReLUs, where measurement shows that their negative slope does not matter.

XNNPACK folds a ReLU into the int8 conv before it (the clamp of its requantization, free) but runs LEAKY_RELU as
a pass of its own over the tensor. DPED+ has eleven of them on 64 channels at full resolution: ten of them cost
14.6 ms of ``dped_mobile``'s 284.7 ms at 720x1280 (LiteRT int8, 2 threads, timed against the file with them as
ReLUs).

Whether the paper's slope of 0.005 matters depends on the weights, so it is measured, one activation at a time.
In ``dped_mobile`` every LeakyReLU of the local network as a ReLU still gives 48 dB against the float model, and
the int8 file is no further from it (a ReLU's output range starts at zero, so no int8 level goes to the negative
side). In ``dped`` the tail's activations feed a full 9x9 output conv that sums their small negative values over
5,184 taps: as ReLUs they give 21 dB.

An activation whose output a global branch scales per photo (``modulated()`` of the model: DPED+'s stem, before
its feature scale and shift) is never swapped. The branch's gain on a dark phone photo amplifies the negative side
far beyond what the calibration photos show: with the stem swapped too, ``dped_mobile``'s int8 file was 1.5 dB
further from the float model on the benchmark's degraded ``coffee`` photo (43.83 against 45.31 dB), and kept, 45.05.

``choose``: activations are tried in turn, the least harmful alone first, and each is kept as a ReLU while the
model with all the chosen ones stays at least ``MIN_DB`` (``min_db``) from the float model on the calibration
images (which never include the held-out photos the gate scores). The export's fidelity gate still compares the
int8 file with the unchanged float model.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from artifacts.fidelity import psnr

from .calibration import model_inputs

MIN_DB = 48.0   # the float model with the chosen ReLUs, against itself: about 6 dB above int8's own error (42 dB)
MARGIN_DB = 6.0  # with a fidelity target (--fidelity-target): at least this far above it
CROP = 128      # activations are measured on the centre crop of each calibration image (the thumbnail: the whole)


def _outputs(model: nn.Module, feeds: list[tuple]) -> list[np.ndarray]:
    with torch.no_grad():
        outs = [model(*args) for args in feeds]
    return [torch.cat([o.flatten() for o in (out if isinstance(out, tuple) else (out,))]).numpy() for out in outs]


def _worst_psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return min(psnr(x, y) for x, y in zip(a, b))


def min_db(fidelity_target: float | None = None) -> float:
    """How close the float model with its ReLUs must stay to itself, for an int8 file gated at its default gate
    or at ``fidelity_target``."""
    return MIN_DB if fidelity_target is None else max(MIN_DB, fidelity_target + MARGIN_DB)


def with_relus(model: nn.Module, names: list[str] | tuple[str, ...]) -> nn.Module:
    """A copy of ``model`` with the named LeakyReLU modules replaced by ReLUs (``model`` itself if none)."""
    if not names:
        return model
    model = copy.deepcopy(model)
    for name in names:
        if not isinstance(model.get_submodule(name), nn.LeakyReLU):
            raise ValueError(f"{name} is not a LeakyReLU")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, nn.ReLU())
    return model


def in_layers(name: str, layers: tuple[str, ...] | list[str]) -> bool:
    """Whether the LeakyReLU module ``name`` is one of ``layers`` (``--float-layers`` names: a module path, every op
    inside it, or ``module:Op``, the ops of one kind directly in it)."""
    for layer in layers:
        module, _, op = layer.partition(":")
        if (op.lower() == "leakyrelu" and name == module) or \
                (not op and module and (name == module or name.startswith(module + "."))):
            return True
    return False


def choose(model: nn.Module, images: list[np.ndarray], thumbnail_size: int = 0, floor_db: float = MIN_DB,
           keep: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The LeakyReLUs of the float ``model`` that can be ReLUs (see the module doc), in the model's order.
    ``images``: float32 (H, W, 3) calibration images; an image-adaptive model gets each one's thumbnail. Those in
    the ``keep`` layers (``in_layers``: what --float-layers keeps in float) and the model's ``modulated()`` ones stay
    LeakyReLUs."""
    model = model.eval()
    modulated = set(getattr(model, "modulated", list)())
    names = [name for name, m in model.named_modules()
             if isinstance(m, nn.LeakyReLU) and not in_layers(name, keep) and name not in modulated]
    if not names:
        return []
    feeds = [model_inputs([img], thumbnail_size, _centre(img))[0] for img in images]
    reference = _outputs(model, feeds)
    alone = {name: _worst_psnr(_outputs(with_relus(model, [name]), feeds), reference) for name in names}
    chosen: list[str] = []
    for name in sorted(names, key=lambda n: -alone[n]):
        if alone[name] < floor_db:
            break
        if _worst_psnr(_outputs(with_relus(model, [*chosen, name]), feeds), reference) >= floor_db:
            chosen.append(name)
    return [name for name in names if name in chosen]


def _centre(img: np.ndarray) -> tuple[slice, slice]:
    y, x = max(0, (img.shape[0] - CROP) // 2), max(0, (img.shape[1] - CROP) // 2)
    return slice(y, y + CROP), slice(x, x + CROP)


def swap(model: nn.Module, images: list[np.ndarray], thumbnail_size: int = 0, fidelity_target: float | None = None,
         keep: tuple[str, ...] | list[str] = ()) -> tuple[nn.Module, list[str], float]:
    """What an int8 export quantizes: (``model`` with the LeakyReLUs ``choose`` picks as ReLUs, their names, the
    floor they were chosen at, ``min_db(fidelity_target)``)."""
    floor = min_db(fidelity_target)
    names = choose(model, images, thumbnail_size, floor, keep)
    return with_relus(model, names), names, floor
