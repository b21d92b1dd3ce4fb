"""Speed and quality of every artifact on every runtime (python -m benchmark)."""
