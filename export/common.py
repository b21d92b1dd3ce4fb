"""What every export target shares: the export spec, its errors, quiet converters and the PyTorch reference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from artifacts import TARGETS
from artifacts.targets import check_recipe
from artifacts.io import join_outputs

DEFAULT_SIZE = (512, 512)


class ExportError(RuntimeError):
    """The conversion itself failed (message says why)."""


class MissingBackend(ExportError):
    """This machine lacks what a target needs (a package, CUDA, macOS); the message says exactly what."""


@dataclass
class ExportSpec:
    model: str = "dped_mobile"
    checkpoint: str | None = None           # None: shipped weights
    target: str = "tflite"
    precision: str = "fp32"
    size: tuple[int, int] = DEFAULT_SIZE    # H, W traced at export
    fixed_size: bool = False                # True when --size was given: no resizing at run time
    out: Path = Path("exported")
    gate_db: float | None = None            # None: the target table's gate for this precision
    calibration: str | None = None          # image folder for int8 calibration (None: built-in photos)
    calibration_count: int = 4              # calibration crops at the export size
    coreml_io: str = "float32"              # Core ML input/output dtype: float32 (default) or float16
    calibration_method: str | None = None   # None: the precision's default (artifacts.targets)
    float_layers: tuple[str, ...] = ()      # layers kept in float (quantize.onnx.quantizable_layers names)
    fidelity_target: float | None = None    # choose float layers until the fidelity reaches it (and gate on it)
    qat_steps: int = 200                    # --calibration-method qat: fine-tuning steps
    weight_methods: tuple[str, ...] = ()    # quantize.weights methods applied before int8
    leaky_as_relu: bool | None = None       # None: the precision's default (artifacts.targets); quantize.activations

    @property
    def stem(self) -> str:
        return f"{self.model}_{self.precision}"

    @property
    def gate(self) -> float:
        if self.fidelity_target is not None:
            return self.fidelity_target
        return self.gate_db if self.gate_db is not None else TARGETS[self.target].precision(self.precision).gate_db

    @property
    def method(self) -> str | None:
        """The calibration method used: the one asked for, else the precision's default."""
        return self.calibration_method or TARGETS[self.target].precision(self.precision).default_method

    def check_recipe(self) -> None:
        """Raise ValueError when the quantization options do not fit the target and precision."""
        check_recipe(TARGETS[self.target], self.precision, self.calibration_method, bool(self.float_layers),
                     self.fidelity_target is not None)
        if self.weight_methods:
            from quantize.weights import METHODS

            unknown = sorted(set(self.weight_methods) - set(METHODS))
            if unknown:
                raise ValueError(f"--weight-methods {','.join(unknown)}: choose from {', '.join(METHODS)}")
            if not self.calibrated:
                raise ValueError(f"--weight-methods: {self.target} {self.precision} is not a calibrated int8 "
                                 "precision; they apply before int8 quantization")

    @property
    def relu(self) -> bool:
        """Whether LeakyReLUs measured harmless become ReLUs before quantization."""
        return self.leaky_as_relu if self.leaky_as_relu is not None else \
            TARGETS[self.target].precision(self.precision).leaky_as_relu

    @property
    def calibrated(self) -> bool:
        return TARGETS[self.target].precision(self.precision).calibration


def check_size(size: tuple[int, int], multiple: int, model: str) -> None:
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"{model} needs H and W in multiples of {multiple} here; "
                         f"got --size {size[0]}x{size[1]}")


@torch.no_grad()
def torch_reference(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """PyTorch output for one (H, W, 3) image, as (H, W, C); several outputs joined as artifacts join them."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    y = model(x)
    if isinstance(y, tuple):
        y = torch.from_numpy(join_outputs(dict(zip(model.contract.output_names, (t.numpy() for t in y))), axis=1))
    return y[0].permute(1, 2, 0).numpy()
