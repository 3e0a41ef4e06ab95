"""The IDX format of MNIST and Fashion-MNIST, and loaders for those two data sets.

An IDX file is a 4-byte magic (two zero bytes, a type byte, the number of dimensions), one
big-endian uint32 per dimension, then the payload in row-major order. Only type 0x08 (unsigned
byte) is used by these data sets and only it is read here. Files may be gzip-compressed.

:func:`load_idx_dataset` looks for the four files in ``data_dir``, then (Fashion-MNIST only) in
Debian's ``/usr/share/datasets/fashion-mnist``, then in a cache folder, and finally downloads
them into the cache, checking each file's MD5 before it is renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import math
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from deepnotes.data.dataset import Dataset, check_labels
from deepnotes.errors import DeepnotesError, unknown_name

log = logging.getLogger(__name__)

UBYTE = 0x08
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(d) for d in range(10)]
CLASSES = {"fashion-mnist": FASHION_CLASSES, "mnist": DIGIT_CLASSES}

# The mirrors and MD5 sums of the .gz files, as torchvision lists them.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
# Where a system package installs a data set (Debian's dataset-fashion-mnist).
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
DOWNLOAD_TIMEOUT_S = 60
OFFLINE_HINT = "put the four IDX files in a folder and pass --data-dir DIR"


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (plain or gzip) into a uint8 tensor of its shape."""
    path = Path(path)
    data = _read_bytes(path)
    shape, offset = _parse_header(data, path)
    expected = math.prod(shape)  # Python ints: a header's dims cannot wrap around
    found = len(data) - offset
    if found < expected:
        raise DeepnotesError(
            f"{path}: truncated IDX payload: expected {expected} bytes, found {found}"
        )
    if found > expected:
        raise DeepnotesError(
            f"{path}: IDX payload too long: expected {expected} bytes for shape "
            f"{tuple(shape)}, found {found}"
        )
    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=offset).reshape(shape)
    return torch.from_numpy(array.copy())


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (by name or by its magic bytes)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DeepnotesError(f"{path}: no such file") from None
    except OSError as e:
        raise DeepnotesError(f"{path}: cannot read ({_one_line(e)})") from None
    if not (path.suffix == ".gz" or raw[:2] == b"\x1f\x8b"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DeepnotesError(
            f"{path}: corrupt gzip file ({_one_line(e)}); delete it and download it again"
        ) from None


def _parse_header(data: bytes, path: Path) -> tuple[list[int], int]:
    """Check the magic; return the dimensions and the payload's offset."""
    if len(data) < 4:
        raise DeepnotesError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, kind, ndims = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0:
        raise DeepnotesError(
            f"{path}: not an IDX file: magic starts 0x{data[:2].hex()}, expected 0x0000"
        )
    if kind != UBYTE:
        raise DeepnotesError(
            f"{path}: unsupported IDX type 0x{kind:02x}; expected 0x08 (unsigned byte)"
        )
    if not 1 <= ndims <= 4:
        raise DeepnotesError(f"{path}: IDX header has {ndims} dimensions; expected 1 to 4")
    offset = 4 + 4 * ndims
    if len(data) < offset:
        raise DeepnotesError(
            f"{path}: truncated IDX header: expected {offset} bytes, found {len(data)}"
        )
    shape = np.frombuffer(data, dtype=">u4", count=ndims, offset=4).astype(np.int64).tolist()
    return shape, offset


def load_idx_dataset(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> Dataset:
    """Load MNIST or Fashion-MNIST: train images then test images, (m, 1, 28, 28) uint8."""
    name = _check_name(name)
    paths = find_idx_files(name, data_dir, download)
    train_x, train_y = _read_pair(paths[0], paths[1])
    test_x, test_y = _read_pair(paths[2], paths[3])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DeepnotesError(
            f"{paths[2]}: test images are {tuple(test_x.shape[1:])} but training images are "
            f"{tuple(train_x.shape[1:])}; expected the same size"
        )
    x = torch.cat([train_x, test_x]).unsqueeze(1)
    y = torch.cat([train_y, test_y])
    test_indices = torch.arange(len(train_x), len(x))
    return Dataset(name, x, y, list(CLASSES[name]), test_indices=test_indices)


def _check_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in CLASSES:
        raise DeepnotesError(unknown_name("IDX data set", name, list(CLASSES)))
    return key


def _read_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, H, W) and int64 labels (n,), checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dim() != 3:
        raise DeepnotesError(
            f"{images_path}: IDX images have shape {tuple(images.shape)}; expected (n, rows, cols)"
        )
    if labels.dim() != 1:
        raise DeepnotesError(
            f"{labels_path}: IDX labels have shape {tuple(labels.shape)}; expected (n,)"
        )
    if len(images) == 0:
        raise DeepnotesError(f"{images_path}: the IDX header counts 0 images; expected at least 1")
    if len(labels) != len(images):
        raise DeepnotesError(
            f"{labels_path}: {len(labels)} labels but {images_path.name} has {len(images)} "
            "images; expected one label per image"
        )
    labels = labels.long()
    check_labels(labels, 10, str(labels_path))
    return images, labels


def cache_dir(name: str) -> Path:
    """``$DEEPNOTES_DATA/<name>`` if that variable is set, else ``~/.cache/deepnotes/<name>``."""
    root = os.environ.get("DEEPNOTES_DATA")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "deepnotes"
    return base / name


def find_idx_files(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> list[Path]:
    """The four IDX files of data set ``name`` in :data:`FILES` order, downloading if need be."""
    name = _check_name(name)
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise DeepnotesError(f"--data-dir {folder} {what}; expected a folder of IDX files")
        found, missing = _look_in(folder)
        if missing:
            raise DeepnotesError(
                f"{folder}: missing {missing[0]} (or {missing[0]}.gz); expected the four IDX "
                f"files {', '.join(FILES)}"
            )
        return found
    for candidate in (SYSTEM_DIRS.get(name), cache_dir(name)):
        if candidate is not None and candidate.is_dir() and not _look_in(candidate)[1]:
            log.info("%s: reading IDX files from %s", name, candidate)
            return _look_in(candidate)[0]
    folder = cache_dir(name)
    if not download:
        raise DeepnotesError(
            f"{name}: IDX files not found in {folder} and downloading is off; {OFFLINE_HINT}"
        )
    for absent in _look_in(folder)[1]:
        _download(name, absent + ".gz", folder)
    return _look_in(folder)[0]


def _look_in(folder: Path) -> tuple[list[Path], list[str]]:
    """The IDX files present in ``folder`` (plain preferred to .gz) and the names missing."""
    found, missing = [], []
    for stem in FILES:
        options = [folder / stem, folder / (stem + ".gz")]
        present = [p for p in options if p.is_file()]
        if present:
            found.append(present[0])
        else:
            missing.append(stem)
    return found, missing


def _download(name: str, filename: str, folder: Path) -> Path:
    """Fetch ``filename`` into ``folder`` via a temp file, renamed only once its MD5 matches."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DeepnotesError(
            f"cannot create the cache folder {folder} ({_one_line(e)}); set DEEPNOTES_DATA "
            f"or {OFFLINE_HINT}"
        ) from None
    expected = MD5[name][filename]
    errors = []
    for mirror in MIRRORS[name]:
        url = mirror + filename
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s to %s", url, folder)
            download_file(url, tmp)
            digest = _md5(tmp)
            if digest != expected:
                raise DeepnotesError(
                    f"{url}: checksum mismatch: md5 {digest}, expected {expected}; the download "
                    f"is corrupt or changed, nothing was kept; try again or {OFFLINE_HINT}"
                )
            target = folder / filename
            os.replace(tmp, target)
            return target
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{url}: {_one_line(e)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DeepnotesError(
        f"could not download {name} {filename} (offline? {'; '.join(errors)}); {OFFLINE_HINT}"
    )


def download_file(url: str, dest: Path) -> None:
    """Write the body of ``url`` to ``dest`` (the one function here that uses the network)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 20)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
