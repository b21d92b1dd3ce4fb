"""Photos in, enhanced photos out: image I/O, the built-in sample photos, post-processing."""
