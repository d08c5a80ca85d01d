"""Local feature extractors. Each returns keypoints in OpenCV pixel convention (top-left pixel centre at 0, 0)."""
from .sift import Features, default_conf, extract, load_image_gray

__all__ = ["Features", "default_conf", "extract", "load_image_gray"]
