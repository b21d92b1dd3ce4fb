"""The deployment contract every image-to-image model states: what goes in, what comes out."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DeploymentContract:
    input_name: str = "image"
    output_name: str = "enhanced"
    layout: str = "NCHW"              # PyTorch layout; exported TFLite files are NHWC
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    color_space: str = "RGB"          # sRGB-encoded, not linear
    any_size: bool = True             # fully convolutional: any H x W
    receptive_field: int = 1          # pixels; tiles need a halo of receptive_field // 2
    channels: int = 3
    notes: str = field(default="")

    @property
    def halo(self) -> int:
        return self.receptive_field // 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value_range"] = list(self.value_range)
        d["halo"] = self.halo
        return d
