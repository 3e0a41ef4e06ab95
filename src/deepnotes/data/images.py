"""A folder of images with one sub-folder per class, read into a uint8 tensor.

Every file is opened and decoded before anything is returned, so a zero-byte, truncated,
mislabelled or oversized (decompression bomb) file is reported up front with its path rather
than crashing an epoch. Images are converted consistently: one channel if every image is grey,
else three (``channels`` 1 or 3 converts every image to grey or RGB instead); transparency is
composited over white, palettes are applied and 16-bit grey is scaled to 8 bits. Each image
is resized so its shorter side is ``size`` and centre-cropped. Files that are not images
(``notes.txt``) are skipped with one warning that counts them; system junk (``.DS_Store``,
``.ipynb_checkpoints/``, ``__MACOSX/``) is skipped silently.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from deepnotes.data.cache import open_or_build
from deepnotes.data.dataset import Dataset
from deepnotes.errors import DeepnotesError, check_range, describe

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
IGNORED_NAMES = frozenset({"__MACOSX", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db"})
MAX_PIXELS = 89_478_485  # Pillow's default decompression-bomb limit (about 0.25 GB of RGBA)
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
SHOW_BAD = 3  # how many bad paths an error message names
MAX_SIDE = 4096  # the largest n_H = n_W images are resized to (a batch of 64 RGB: 3 GiB)
CACHE_CHOICES = ("auto", "on", "off")
CACHE_ABOVE = 1 << 30  # --data-cache auto: folders above 1 GiB decoded are read from the cache


def load_image_folder(
    path: str | os.PathLike, size: int, skip_bad: bool = False, progress: bool = False,
    cache: str = "auto", cache_dir: str | os.PathLike | None = None,
    channels: int | None = None,
) -> Dataset:
    """Read ``path/<class>/<image>`` into a Dataset of (m, n_C, size, size) uint8 images: in
    memory, or (``cache`` "on", or "auto" for a folder above :data:`CACHE_ABOVE` bytes decoded)
    mapped from a decoded cache on disk (:mod:`deepnotes.data.cache`). ``channels``: n_C, every
    image converted to grey (1) or RGB (3); None: 1 if every image is grey, else 3."""
    size = _check_size(size)
    _check_channels(channels)
    read = _read if channels is None else functools.partial(_read_as, channels=channels)
    if cache not in CACHE_CHOICES:
        raise DeepnotesError(f"--data-cache {cache}: expected one of {', '.join(CACHE_CHOICES)}")
    root = _check_folder(path)
    classes = _class_folders(root)
    files, labels, others = [], [], []
    for label, name in enumerate(classes):
        found, not_images = _image_files(root / name)
        others += not_images
        if not found:
            raise DeepnotesError(
                f"{root / name}: empty class folder; expected image files "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        files += found
        labels += [label] * len(found)
    if others:
        log.warning("skipped %d files that are not images in %s, e.g. %s", len(others), root,
                    others[0].relative_to(root))
    if cache == "on" or (cache == "auto" and len(files) * 3 * size * size > CACHE_ABOVE):
        return _from_cache(root, files, labels, classes, size, skip_bad, progress, cache_dir,
                           channels, read)
    arrays, keep, bad = _read_all(files, size, progress, root, read)
    _refuse_bad(root, bad, skip_bad)
    labels = [labels[i] for i in keep]
    _check_no_empty_class(labels, classes, root)
    x = _stack(arrays)
    y = torch.tensor(labels, dtype=torch.int64)
    return Dataset(str(root), x, y, classes, skipped=[str(p) for p, _ in bad],
                   sources=[str(files[i]) for i in keep])


def _from_cache(root: Path, files: list[Path], labels: list[int], classes: list[str], size: int,
                skip_bad: bool, progress: bool, cache_dir, channels: int | None,
                read) -> Dataset:
    """The folder through its decoded cache, its records decoded by ``read(path, size)``: they
    stay on disk, mapped."""
    cached = open_or_build(root, files, labels, size, read, cache_dir, progress, channels)
    bad = [(files[i], why) for i, why in cached.bad]
    _refuse_bad(root, bad, skip_bad)
    _check_no_empty_class(cached.y.tolist(), classes, root)
    unread = {i for i, _ in cached.bad}
    return Dataset(str(root), cached.x, cached.y, classes, skipped=[str(p) for p, _ in bad],
                   on_disk=True, readahead=cached.readahead,
                   sources=[str(f) for i, f in enumerate(files) if i not in unread])


def _refuse_bad(root: Path, bad: list[tuple[Path, str]], skip_bad: bool) -> None:
    """Unreadable files stop the run unless ``skip_bad``, which warns with their count. Every
    one is named: in the error line (up to :data:`SHOW_BAD`), else a warning line each first."""
    if len(bad) > SHOW_BAD or (bad and skip_bad):
        for path, why in bad:
            log.warning("unreadable image %s (%s)", path, why)
    if bad and not skip_bad:
        shown = "; ".join(f"{p} ({why})" for p, why in bad[:SHOW_BAD])
        more = f" and {len(bad) - SHOW_BAD} more (all listed above)" if len(bad) > SHOW_BAD else ""
        raise DeepnotesError(
            f"{root}: {len(bad)} unreadable image files: {shown}{more}; fix or remove them "
            "(--skip-bad trains without them)"
        )
    if bad:
        log.warning("%s: skipped the %d unreadable image files listed above", root, len(bad))


def load_image(path: str | os.PathLike, size: int, channels: int) -> torch.Tensor:
    """One image file as a (channels, size, size) uint8 tensor, converted as in a folder."""
    size = _check_size(size)
    if channels not in (1, 3):
        raise DeepnotesError(f"channels={channels!r}; expected 1 (grey) or 3 (RGB)")
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DeepnotesError(f"{path} {what}; expected an image file")
    try:
        array = _read_as(path, size, channels)
    except Exception as e:  # any decoder failure means a bad file
        raise DeepnotesError(f"{path}: unreadable image ({describe(e)})") from None
    return _chw(array[None])[0]


def to_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 images (m, n_C, n_H, n_W) with n_C = ``channels``: grey repeated into R, G and B,
    or RGB to grey as Pillow's ``convert("L")``: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16
    (L = 0.299 R + 0.587 G + 0.114 B, rounded); None leaves them as they are."""
    _check_channels(channels)
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()  # (m, 3, n_H, n_W)
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int64).view(1, 3, 1, 1)
    grey = ((x.to(torch.int64) * weights).sum(1, keepdim=True) + 0x8000) >> 16
    return grey.to(torch.uint8)  # (m, 1, n_H, n_W)


def _check_channels(channels: int | None) -> None:
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DeepnotesError(f"--channels {channels!r}: expected 1 (grey) or 3 (RGB)")


def _check_size(size: int) -> int:
    check_range("size", size, 1, MAX_SIDE, integer=True, hint="n_H = n_W, in pixels")
    return operator.index(size)


def _check_folder(path: str | os.PathLike) -> Path:
    root = Path(path)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DeepnotesError(f"{root} {what}; expected a folder with one sub-folder per class")
    return root


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


def _class_folders(root: Path) -> list[str]:
    """Sorted names of the class sub-folders, junk left out."""
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    classes = [e.name for e in entries if e.is_dir() and not _ignored(e.name)]
    stray = [e.name for e in entries if e.is_file() and not _ignored(e.name)]
    if stray:
        log.warning("%s: %d files outside any class folder ignored", root, len(stray))
    if not classes:
        raise DeepnotesError(f"{root}: no class sub-folders; expected one sub-folder per class")
    if len(classes) < 2:
        raise DeepnotesError(
            f"{root}: need at least 2 classes, found 1 ({classes[0]!r}); expected one "
            "sub-folder per class"
        )
    return classes


def _image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files under ``folder`` (recursively, sorted), and the other files; hidden and junk
    entries are in neither."""
    found: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for name in sorted(filenames):
            if _ignored(name):
                continue
            is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            (found if is_image else others).append(Path(dirpath) / name)
    return found, others


def _read_all(
    files: list[Path], size: int, progress: bool, root: Path, read
) -> tuple[list[np.ndarray], list[int], list[tuple[Path, str]]]:
    """Decode every file with ``read(path, size)``: the arrays read, their indices into
    ``files``, and the bad files."""
    arrays, keep, bad = [], [], []
    bar = tqdm(
        files, desc=f"reading {root.name}", unit="img", file=sys.stderr, disable=not progress
    )
    for i, path in enumerate(bar):
        try:
            arrays.append(read(path, size))
            keep.append(i)
        except Exception as e:  # any decoder failure means a bad file
            bad.append((path, describe(e)))
    return arrays, keep, bad


def _read(path: Path, size: int) -> np.ndarray:
    """Decode, convert to L or RGB, resize and crop: (size, size) or (size, size, 3) uint8."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise Image.DecompressionBombError(
                    f"{img.width}x{img.height} pixels is above the limit of {MAX_PIXELS}"
                )
            img.load()
            return np.asarray(_resize_crop(_to_l_or_rgb(img), size))


def _read_as(path: Path, size: int, channels: int | None) -> np.ndarray:
    """:func:`_read`, then grey (``channels`` 1: (size, size)) or RGB (3: (size, size, 3));
    None: as decoded."""
    array = _read(path, size)
    if channels == 3 and array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if channels == 1 and array.ndim == 3:
        return np.asarray(Image.fromarray(array).convert("L"))
    return array


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    """Grey modes to L (16-bit divided by 257), colour to RGB, alpha composited over white."""
    mode = img.mode
    if mode in WIDE_GREY_MODES:
        wide = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8))
    if mode in ("L", "RGB"):
        if "transparency" not in img.info:
            return img
        img = img.convert(mode + "A")
    elif mode in ("P", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    if img.mode in ("LA", "RGBA"):
        base = img.mode[:-1]
        white = Image.new(base, img.size, (255,) * len(base) if base == "RGB" else 255)
        return Image.composite(img.convert(base), white, img.getchannel("A"))
    return img.convert("L" if mode in GREY_MODES else "RGB")


def _resize_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size`` and keep the centre square (bilinear)."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    box = (left, top, left + side, top + side)
    return img.resize((size, size), Image.Resampling.BILINEAR, box=box)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    """Stack into (m, n_C, H, W): one channel if every image is grey, else three."""
    if all(a.ndim == 2 for a in arrays):
        return _chw(np.stack(arrays))
    colour = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    return _chw(np.stack(colour))


def _chw(batch: np.ndarray) -> torch.Tensor:
    """(m, H, W) or (m, H, W, C) uint8 to a contiguous (m, C, H, W) tensor."""
    batch = batch[:, None] if batch.ndim == 3 else batch.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.require(batch, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"]))


def _check_no_empty_class(labels: list[int], classes: list[str], root: Path) -> None:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DeepnotesError(
            f"{root / empty[0]}: no readable images left in this class folder after skipping "
            "bad files; expected at least one"
        )

