"""The one image reader: files → ``H×W×3`` uint8 RGB, with clear errors and a size limit.

Every command and ``Colorize`` read reference images, frames and ground truth through here,
so a missing file, a file that is not an image, or a decompression bomb (a small file that
decodes to gigapixels) all give the same one-line ``ImageError`` naming the file.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..util.errors import ImageError  # noqa: F401  (defined with the other user errors)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 16384 * 16384       # larger images are refused before decoding (decompression bombs)
GRAY_TOLERANCE = 6               # max(R,G,B) - min(R,G,B) at or below this counts as gray
MIN_COLOUR_FRACTION = 1e-3       # an image is coloured if more than this fraction of pixels are not gray




def read_rgb(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """An image file as ``H×W×3`` uint8 RGB (gray expanded, alpha dropped, 16-bit gray scaled).

    ``what`` names the file's role in messages (``"ref image"``, ``"frame"``, …).
    """
    from PIL import Image
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{what} {path} is {w}x{h}: more than the {MAX_PIXELS:,} pixels accepted")
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im, dtype=np.float64)
                    arr = np.clip(arr / (257.0 if arr.max() > 255 else 1.0), 0, 255).round().astype(np.uint8)
                    return np.repeat(arr[..., None], 3, axis=2)
                return np.array(im.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{what} {path} is too large to decode safely ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:   # PIL raises all three for corrupt files
        raise ImageError(f"{what} {path} cannot be read as an image: {e}") from None


def list_images(folder: str | os.PathLike, what: str = "folder") -> list[Path]:
    """Image files in ``folder`` sorted by name (hidden files skipped); ``ImageError`` if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{what} {folder} is not a folder" if folder.exists() else f"{what} {folder} does not exist")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not files:
        raise ImageError(f"{what} {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def is_colour(rgb: np.ndarray, tolerance: int = GRAY_TOLERANCE,
              min_fraction: float = MIN_COLOUR_FRACTION) -> bool:
    """True if more than ``min_fraction`` of the pixels have max(R,G,B) − min(R,G,B) > ``tolerance``.

    The tolerance absorbs the ±1–3 channel noise that JPEG or colour management add to a gray
    image; the fraction lets a user colour only part of a frame. ``rgb``: ``H×W×3`` uint8.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.size == 0:
        return False
    c = rgb[..., :3].astype(np.int16)
    spread = c.max(axis=2) - c.min(axis=2)
    return bool((spread > tolerance).mean() > min_fraction)


def read_rgb_like_opencv(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """An image file as ``cv2.imread(path)`` reads it (what the official DDColor scripts colour), as H×W×3
    uint8 RGB: grey → three equal channels, 16 bits → the high byte (OpenCV's conversion), alpha
    dropped (a warning when some pixels are transparent: their hidden colour is used), EXIF orientation
    applied. ``ImageError`` naming ``what`` for a missing or unreadable file."""
    import logging

    import cv2
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"{what} {path} cannot be read as an image (OpenCV cannot decode it)")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    log = logging.getLogger("vscolormnet")
    if raw is not None and raw.dtype != np.uint8:
        log.info("%s %s has %s samples: reduced to 8 bits as OpenCV's imread does", what, path, raw.dtype)
    if raw is not None and raw.ndim == 3 and raw.shape[2] == 4 and np.issubdtype(raw.dtype, np.integer) \
            and (raw[..., 3] != np.iinfo(raw.dtype).max).any():
        log.warning("%s %s has transparent pixels: the alpha channel is ignored (as the official DDColor scripts "
                    "do); flatten it onto a background first if the hidden colours are not meant to show", what, path)
    return np.ascontiguousarray(bgr[..., ::-1])
