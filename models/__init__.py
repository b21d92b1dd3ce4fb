"""Networks, the model registry and the shipped weights.

    from models import create_model, list_models
    net = create_model("dped_mobile", pretrained=True)   # eval mode, NCHW float32 RGB [0, 1] -> same
"""
from .contract import DeploymentContract
from .dped import DPEDConfig, DPEDGenerator, TextureDiscriminator, model_config  # registers dped, dped_mobile
from .intrinsic import IntrinsicComposer, IntrinsicConfig, IntrinsicDecomposer  # registers intrinsic_*
from .mdie import (DOMAINS, MDIE, MDIEConfig, MDIEDiscriminator, MDIEGenerator, MDIEGeneratorConfig,  # mdie*
                   domain_label)
from .layers import conv_macs_per_pixel, count_parameters, fold_batchnorm
from .memory import keep_freed_memory
from .registry import (CheckpointError, check_model_name, create_model, list_models, load_checkpoint,
                       pretrained_models)

__all__ = [
    "CheckpointError", "DOMAINS", "DPEDConfig", "DPEDGenerator", "DeploymentContract", "IntrinsicComposer",
    "IntrinsicConfig", "IntrinsicDecomposer", "MDIE", "MDIEConfig", "MDIEDiscriminator", "MDIEGenerator",
    "MDIEGeneratorConfig", "TextureDiscriminator", "domain_label",
    "check_model_name", "conv_macs_per_pixel", "count_parameters", "create_model", "fold_batchnorm",
    "keep_freed_memory",
    "list_models", "load_checkpoint", "model_config", "pretrained_models",
]
