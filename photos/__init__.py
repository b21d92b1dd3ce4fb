"""Photos in: reading any common image file, and the built-in sample photos (nothing is downloaded)."""
from .io import IMAGE_SUFFIXES, MAX_PIXELS, ImageError, list_images, load_image, read_uint8
from .samples import SPLITS, TRAIN_PHOTOS, VALIDATION_PHOTOS, sample_photo, sample_photos

__all__ = ["IMAGE_SUFFIXES", "ImageError", "MAX_PIXELS", "SPLITS", "TRAIN_PHOTOS", "VALIDATION_PHOTOS",
           "list_images", "load_image", "read_uint8", "sample_photo", "sample_photos"]
