"""The strong view's photometric augmentation (polite_teacher.md §5), from torchvision transforms.

Colour jitter, grayscale and Gaussian blur act on a PIL image; then three random-noise cutouts
(torchvision's RandomErasing draws) act on the array. Geometry never changes, so the weak view's
boxes and masks hold for the strong view. Randomness comes from torch's generator (seeded per data-loader worker by detectron2).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from PIL import Image, ImageFilter
from torchvision import transforms as T

__all__ = ["RandomGaussianBlur", "StrongAugmentation"]


class RandomGaussianBlur:
    """Gaussian blur of a PIL image with sigma uniform in ``sigma`` (drawn from torch's generator).
    PIL's blur is used: several times faster than torchvision's convolution on large images."""

    def __init__(self, sigma: Tuple[float, float]):
        self.sigma = (float(sigma[0]), float(sigma[1]))

    def __call__(self, image: Image.Image) -> Image.Image:
        sigma = torch.empty(1).uniform_(*self.sigma).item()
        return image.filter(ImageFilter.GaussianBlur(radius=sigma))

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(sigma={self.sigma})"


def _cutout(erasing: T.RandomErasing, image: np.ndarray) -> None:
    """torchvision's RandomErasing(value="random") applied in place to a uint8 HWC array: the same
    draws (probability, rectangle, N(0, 1) noise on the [0, 1] scale), without converting the whole
    image to float and back."""
    if torch.rand(1) >= erasing.p:
        return
    chw = torch.from_numpy(image).permute(2, 0, 1)
    i, j, h, w, v = T.RandomErasing.get_params(chw, scale=erasing.scale, ratio=erasing.ratio, value=None)
    if v is chw:  # no rectangle fitted: torchvision leaves the image as it is
        return
    image[i:i + h, j:j + w] = v.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


class StrongAugmentation:
    """Callable: uint8 HWC image (``image_format`` channel order) -> augmented image, same shape."""

    @configurable
    def __init__(
        self,
        *,
        color_jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
        color_jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
        blur_prob: float = 0.5,
        blur_sigma: Tuple[float, float] = (0.1, 2.0),
        cutouts: Sequence[Sequence[float]] = (
            (0.7, 0.05, 0.2, 0.3, 3.3),
            (0.5, 0.02, 0.2, 0.1, 6.0),
            (0.3, 0.02, 0.2, 0.05, 8.0),
        ),
        image_format: str = "BGR",
    ):
        """
        Args:
            color_jitter: brightness, contrast, saturation, hue of ColorJitter.
            cutouts: one row per RandomErasing: probability, scale min, scale max, ratio min, ratio max.
            image_format: "BGR" (detectron2's default) or "RGB".
        """
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"strong augmentation supports BGR or RGB images, not {image_format}")
        self.image_format = image_format
        self.photometric = T.Compose([
            T.RandomApply([T.ColorJitter(*color_jitter)], p=color_jitter_prob),
            T.RandomGrayscale(p=grayscale_prob),
            T.RandomApply([RandomGaussianBlur(blur_sigma)], p=blur_prob),
        ])
        self.cutouts = [
            T.RandomErasing(p=p, scale=(s0, s1), ratio=(r0, r1), value="random")
            for p, s0, s1, r0, r1 in cutouts
        ]

    @classmethod
    def from_config(cls, cfg):
        s = cfg.INPUT.STRONG
        return {
            "color_jitter": tuple(s.COLOR_JITTER),
            "color_jitter_prob": s.COLOR_JITTER_PROB,
            "grayscale_prob": s.GRAYSCALE_PROB,
            "blur_prob": s.BLUR_PROB,
            "blur_sigma": tuple(s.BLUR_SIGMA),
            "cutouts": [tuple(row) for row in s.CUTOUTS],
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
        rgb = image[:, :, ::-1] if self.image_format == "BGR" else image
        out = np.array(self.photometric(Image.fromarray(np.ascontiguousarray(rgb))))
        for erasing in self.cutouts:
            _cutout(erasing, out)
        return np.ascontiguousarray(out[:, :, ::-1]) if self.image_format == "BGR" else out

    def __repr__(self) -> str:
        return f"StrongAugmentation({self.photometric}, cutouts={self.cutouts})"
