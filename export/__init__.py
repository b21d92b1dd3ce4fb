"""Export to phone formats (python -m export), each artifact checked against PyTorch."""
