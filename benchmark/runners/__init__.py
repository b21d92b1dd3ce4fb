"""One runner per runtime. Each module has:

    NAME: str                                   the runtime's name in the results table
    TARGET: str | None                          the export target whose artifacts it runs (None: PyTorch eager)
    unavailable() -> str | None                 why it cannot run on this machine, or None
    load(source, threads) -> Callable           source: an artifact path (or a model name for PyTorch);
                                                the callable maps float32 (H, W, 3) in [0, 1] to the same
"""
from importlib import import_module
from types import ModuleType

RUNNERS = ("pytorch", "onnxruntime", "litert", "coreml", "tensorrt")


def runner(name: str) -> ModuleType:
    if name not in RUNNERS:
        raise ValueError(f"Unknown runtime {name!r}. Known: {', '.join(RUNNERS)}")
    return import_module(f"benchmark.runners.{name}")


def runner_for_target(target: str) -> ModuleType:
    for name in RUNNERS:
        mod = runner(name)
        if mod.TARGET == target:
            return mod
    raise ValueError(f"No runtime runs {target!r} artifacts")
