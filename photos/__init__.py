"""Photos in: reading any common image file, the built-in sample photos (nothing is downloaded), and the camera
degradation that gives them a phone side (``photos.degrade``)."""
from .io import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageError, list_images, load_image, max_pixels, open_image,
                 read_uint8, set_max_pixels)
from .samples import SPLITS, TRAIN_PHOTOS, VALIDATION_PHOTOS, sample_photo, sample_photos

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "ImageError", "SPLITS", "TRAIN_PHOTOS", "VALIDATION_PHOTOS",
           "list_images", "load_image", "max_pixels", "open_image", "read_uint8", "sample_photo", "sample_photos",
           "set_max_pixels"]
