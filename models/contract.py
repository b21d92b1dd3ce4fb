"""The deployment contract every image-to-image model states: what goes in, what comes out."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DeploymentContract:
    input_name: str = "image"
    layout: str = "NCHW"              # PyTorch layout; exported TFLite files are NHWC
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    color_space: str = "RGB"          # sRGB-encoded, not linear
    any_size: bool = True             # fully convolutional: any H x W
    receptive_field: int = 1          # pixels; tiles need a halo of receptive_field // 2
    channels: int = 3
    outputs: tuple[tuple[str, int], ...] = (("enhanced", 3),)   # (name, channels) of each output, in order
    size_multiple: int = 1            # H and W of an exported graph must be multiples of this (stride-32 encoders)
    thumbnail: int | None = None      # image-adaptive models: side of the whole-photo thumbnail, a second input
                                      # named "thumbnail" (artifacts.thumbnail makes it; tiles share it)
    tile_halo: int | None = None      # halo for tiling when the receptive field spans the whole tile (encoders):
                                      # tiles then approximate the whole-image result (measured, not exact)
    notes: str = field(default="")

    def __post_init__(self) -> None:
        names = [n for n, _ in self.outputs]
        if names != sorted(names):  # artifacts concatenate several outputs in name order (artifacts/io.py)
            raise ValueError(f"outputs must be listed in name order, got {names}")

    @property
    def halo(self) -> int:
        return self.tile_halo if self.tile_halo is not None else self.receptive_field // 2

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.outputs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value_range"] = list(self.value_range)
        d["outputs"] = [{"name": n, "channels": c} for n, c in self.outputs]
        d["halo"] = self.halo
        return d


def thumbnail_size(model: object) -> int:
    """The side of the thumbnail ``model`` takes as its second input (0: not an image-adaptive model)."""
    return getattr(getattr(model, "contract", None), "thumbnail", None) or 0
