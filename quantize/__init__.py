"""Post-training quantization: calibration sets and the per-target recipes (python -m quantize)."""
