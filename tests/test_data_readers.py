"""The IDX, image-folder and CSV readers: good inputs, and every bad input's one-line message.

All inputs are generated under tmp_path; the network is never touched (the download function is
replaced by a fake in every test).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepnotes.data import idx, images, tables
from deepnotes.errors import DeepnotesError

# ---------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_byte, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(np.asarray(array, dtype=np.uint8))
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_idx_set(folder: Path, n_train=6, n_test=4, gz=(True, False, True, False), seed=0):
    """The four IDX files with 28x28 images; returns (train images, train labels, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    ]
    for stem, array, compress in zip(idx.FILES, arrays, gz, strict=True):
        write_idx(folder / (stem + (".gz" if compress else "")), array)
    return arrays


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no system data set, and a cache folder under tmp_path in every test."""

    def no_network(url, dest):
        raise AssertionError(f"test touched the network: {url}")

    monkeypatch.setattr(idx, "download_file", no_network)
    monkeypatch.setattr(idx, "SYSTEM_DIRS", {})
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_read_idx_plain_and_gzip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    x = idx.read_idx(write_idx(tmp_path / name, array))
    assert x.dtype == torch.uint8
    assert x.shape == (2, 3, 4)
    assert torch.equal(x, torch.from_numpy(array))


def test_read_idx_gzip_detected_by_magic(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(idx_bytes(np.array([1, 2, 3], dtype=np.uint8))))
    assert idx.read_idx(path).tolist() == [1, 2, 3]


def test_read_idx_truncated_payload(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 60000, 28, 28)  # says 60000 28x28 images
    path.write_bytes(gzip.compress(header + bytes(1024)))
    with pytest.raises(DeepnotesError) as e:
        idx.read_idx(path)
    message = str(e.value)
    assert "train-images-idx3-ubyte.gz: truncated IDX payload" in message
    assert "expected 47040000 bytes, found 1024" in message
    assert "\n" not in message


def test_read_idx_huge_dims_do_not_wrap(tmp_path):
    # 2^31 * 2^31 * 4 = 2^64 wraps to 0 in int64; the size must be computed exactly
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2**31, 2**31, 4))
    with pytest.raises(DeepnotesError, match=f"expected {2**64} bytes, found 0"):
        idx.read_idx(path)


def test_read_idx_payload_too_long(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"extra")
    with pytest.raises(DeepnotesError, match=r"x-idx1-ubyte: .*expected 4 bytes .*found 9"):
        idx.read_idx(path)


@pytest.mark.parametrize(
    "data, pattern",
    [
        (b"", "0 bytes is too short for an IDX header"),
        (b"\x12\x34\x08\x01" + bytes(8), "magic starts 0x1234, expected 0x0000"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01" + bytes(4), r"unsupported IDX type 0x0d.*0x08"),
        (b"\x00\x00\x08\x00", "0 dimensions; expected 1 to 4"),
        (b"\x00\x00\x08\x05" + bytes(20), "5 dimensions; expected 1 to 4"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", r"truncated IDX header: expected 16 bytes, found 8"),
    ],
)
def test_read_idx_bad_header(tmp_path, data, pattern):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DeepnotesError, match=pattern) as e:
        idx.read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_corrupt_gzip(tmp_path):
    garbage = tmp_path / "t10k-images-idx3-ubyte.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(DeepnotesError, match=r"t10k-images-idx3-ubyte.gz: corrupt gzip"):
        idx.read_idx(garbage)
    cut = tmp_path / "t10k-labels-idx1-ubyte.gz"
    whole = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DeepnotesError, match=r"t10k-labels-idx1-ubyte.gz: corrupt gzip"):
        idx.read_idx(cut)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DeepnotesError, match="nothing-here: no such file"):
        idx.read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize(
    "name, classes",
    [
        ("fashion-mnist", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                           "Shirt", "Sneaker", "Bag", "Ankle boot"]),
        ("mnist", [str(d) for d in range(10)]),
    ],
)  # fmt: skip
def test_load_idx_dataset_from_data_dir(tmp_path, name, classes):
    arrays = write_idx_set(tmp_path / "d")
    data = idx.load_idx_dataset(name, data_dir=tmp_path / "d", download=False)
    assert data.name == name
    assert data.classes == classes
    assert data.x.shape == (10, 1, 28, 28) and data.x.dtype == torch.uint8
    assert data.y.dtype == torch.int64
    assert torch.equal(data.x[:6, 0], torch.from_numpy(arrays[0]))
    assert torch.equal(data.x[6:, 0], torch.from_numpy(arrays[2]))
    assert data.y.tolist() == arrays[1].tolist() + arrays[3].tolist()
    assert data.test_indices.tolist() == [6, 7, 8, 9]


def test_load_idx_dataset_unknown_name():
    with pytest.raises(DeepnotesError, match="did you mean 'fashion-mnist'"):
        idx.load_idx_dataset("fashion-mnst")


def test_load_idx_dataset_missing_file(tmp_path):
    write_idx_set(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DeepnotesError) as e:
        idx.load_idx_dataset("mnist", data_dir=tmp_path / "d")
    assert str(tmp_path / "d") in str(e.value)
    assert "missing t10k-labels-idx1-ubyte" in str(e.value)


def test_load_idx_dataset_data_dir_not_there(tmp_path):
    with pytest.raises(DeepnotesError, match="nope does not exist"):
        idx.load_idx_dataset("mnist", data_dir=tmp_path / "nope")


def test_load_idx_dataset_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path / "d")
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DeepnotesError) as e:
        idx.load_idx_dataset("mnist", data_dir=tmp_path / "d")
    message = str(e.value)
    assert "t10k-labels-idx1-ubyte: 3 labels but t10k-images-idx3-ubyte.gz has 4 images" in message


def test_load_idx_dataset_zero_images(tmp_path):
    write_idx_set(tmp_path / "d")
    write_idx(tmp_path / "d" / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte", np.zeros(0))
    with pytest.raises(DeepnotesError, match="train-images-idx3-ubyte.gz: the IDX header counts "
                                             "0 images; expected at least 1"):
        idx.load_idx_dataset("mnist", data_dir=tmp_path / "d")


def test_load_idx_dataset_label_out_of_range(tmp_path):
    write_idx_set(tmp_path / "d")
    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte", np.array([0, 1, 2, 12, 3, 4]))
    with pytest.raises(DeepnotesError) as e:
        idx.load_idx_dataset("fashion-mnist", data_dir=tmp_path / "d")
    message = str(e.value)
    assert "train-labels-idx1-ubyte:" in message
    assert "out of range [0, 9]" in message and "label 12" in message


def test_system_folder_only_for_fashion_mnist(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "system")
    monkeypatch.setattr(idx, "SYSTEM_DIRS", {"fashion-mnist": tmp_path / "system"})
    data = idx.load_idx_dataset("fashion-mnist")
    assert data.x.shape == (10, 1, 28, 28)
    with pytest.raises(DeepnotesError, match=r"not found in .*mnist and downloading is off"):
        idx.load_idx_dataset("mnist", download=False)


def test_cache_folder_used_before_download(tmp_path):
    write_idx_set(tmp_path / "cache" / "mnist")
    data = idx.load_idx_dataset("mnist")  # the autouse fixture fails any download
    assert data.x.shape == (10, 1, 28, 28)


def fake_files(name: str) -> dict[str, bytes]:
    """Gzip IDX bytes for the four files of a tiny data set, by .gz file name."""
    rng = np.random.default_rng(1)
    arrays = [
        rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        np.array([0, 1, 2], dtype=np.uint8),
        rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        np.array([3, 4], dtype=np.uint8),
    ]
    return {
        stem + ".gz": gzip.compress(idx_bytes(a), mtime=0)
        for stem, a in zip(idx.FILES, arrays, strict=True)
    }


def test_download_verifies_and_renames(tmp_path, monkeypatch):
    files = fake_files("mnist")
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    monkeypatch.setitem(idx.MD5, "mnist", md5)
    fetched = []

    def fake_download(url, dest):
        fetched.append(url)
        Path(dest).write_bytes(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(idx, "download_file", fake_download)
    data = idx.load_idx_dataset("mnist")
    assert data.x.shape == (5, 1, 28, 28)
    assert data.test_indices.tolist() == [3, 4]
    assert len(fetched) == 4 and all(u.startswith(idx.MIRRORS["mnist"][0]) for u in fetched)
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)


def test_download_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    def fake_download(url, dest):
        Path(dest).write_bytes(b"<html>captive portal</html>")

    monkeypatch.setattr(idx, "download_file", fake_download)
    with pytest.raises(DeepnotesError) as e:
        idx.load_idx_dataset("fashion-mnist")
    message = str(e.value)
    assert "checksum mismatch" in message
    assert "expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert list((tmp_path / "cache" / "fashion-mnist").iterdir()) == []


def test_download_network_error_says_offline(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, dest):
        calls.append(url)
        Path(dest).write_bytes(b"half")
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(idx, "download_file", fake_download)
    with pytest.raises(DeepnotesError) as e:
        idx.load_idx_dataset("mnist")
    message = str(e.value)
    assert message.startswith("could not download mnist train-images-idx3-ubyte.gz (offline?")
    assert "pass --data-dir DIR" in message and "\n" not in message
    assert len(calls) == len(idx.MIRRORS["mnist"])  # every mirror tried
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_download_off(tmp_path):
    with pytest.raises(DeepnotesError, match="--data-dir DIR"):
        idx.load_idx_dataset("fashion-mnist", download=False)


# ---------------------------------------------------------------- image folders


def save(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def solid(mode: str, size, colour) -> Image.Image:
    return Image.new(mode, size, colour)


def grey16(value: int, size=(6, 4)) -> Image.Image:
    img = Image.fromarray(np.full(size[::-1], value, dtype=np.uint16))
    assert img.mode == "I;16"
    return img


def add_junk(root: Path) -> None:
    """Entries that must never become classes or examples."""
    save(root / ".ipynb_checkpoints" / "x.png", solid("RGB", (4, 4), "red"))
    save(root / "__MACOSX" / "cat" / "._a.png", solid("RGB", (4, 4), "red"))
    save(root / ".hidden" / "a.png", solid("RGB", (4, 4), "red"))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "README.txt").write_text("not a class")


def test_load_image_folder_colour(tmp_path):
    root = tmp_path / "pets"
    save(root / "dog" / "rgb.jpg", solid("RGB", (10, 10), (0, 0, 255)))
    save(root / "cat" / "grey.png", solid("L", (12, 8), 100))
    save(root / "cat" / "clear.png", solid("RGBA", (8, 8), (0, 0, 0, 0)))
    palette = solid("P", (8, 16), 0)
    palette.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    save(root / "cat" / "palette.GIF", palette)
    save(root / "dog" / "wide.png", grey16(65535))
    (root / "dog" / "notes.txt").write_text("ignored")
    (root / "dog" / ".DS_Store").write_bytes(b"junk")
    (root / "dog" / "._rgb.jpg").write_bytes(b"AppleDouble junk")
    (root / "dog" / ".ipynb_checkpoints").mkdir()
    add_junk(root)

    data = images.load_image_folder(root, size=8)
    assert data.classes == ["cat", "dog"]
    assert data.x.shape == (5, 3, 8, 8) and data.x.dtype == torch.uint8
    assert data.y.dtype == torch.int64 and data.y.tolist() == [0, 0, 0, 1, 1]
    assert data.skipped == [] and data.test_indices is None
    # cat: clear.png, grey.png, palette.GIF (sorted); dog: rgb.jpg, wide.png
    pixel = data.x[:, :, 4, 4].tolist()
    assert pixel[0] == [255, 255, 255]  # transparent over white
    assert pixel[1] == [100, 100, 100]  # grey repeated into three channels
    assert pixel[2] == [255, 0, 0]  # palette applied
    assert pixel[3][2] > 240 and pixel[3][0] < 15  # JPEG blue
    assert pixel[4] == [255, 255, 255]  # 16-bit 65535 -> 255


def test_load_image_folder_grey(tmp_path):
    root = tmp_path / "g"
    save(root / "a" / "l.png", solid("L", (5, 9), 30))
    save(root / "a" / "wide.png", grey16(257 * 100))
    save(root / "a" / "wide_max.tif", grey16(65535))
    save(root / "b" / "one.bmp", solid("1", (6, 6), 1))
    save(root / "b" / "la.PNG", solid("LA", (6, 6), (0, 0)))
    data = images.load_image_folder(root, size=4)
    assert data.x.shape == (5, 1, 4, 4)
    assert data.in_channels == 1
    assert data.x[:, 0, 2, 2].tolist() == [30, 100, 255, 255, 255]  # LA transparent -> white
    assert data.y.tolist() == [0, 0, 0, 1, 1]


def test_resize_shorter_side_then_centre_crop(tmp_path):
    root = tmp_path / "r"
    stripes = np.zeros((10, 30), dtype=np.uint8)
    stripes[:, 7:23] = 255  # a white band a little wider than the centre square
    save(root / "a" / "wide.png", Image.fromarray(stripes))
    save(root / "b" / "b.png", solid("L", (3, 3), 0))
    data = images.load_image_folder(root, size=5)
    assert data.x.shape == (2, 1, 5, 5)
    assert (data.x[0, 0] == 255).all()  # only the centre square (the white band) is kept


def layout_missing(root: Path) -> None:
    pass


def layout_file(root: Path) -> None:
    root.write_text("x")


def layout_junk_only(root: Path) -> None:
    root.mkdir()
    add_junk(root)


def layout_one_class(root: Path) -> None:
    save(root / "only" / "a.png", solid("L", (2, 2), 0))
    add_junk(root)


@pytest.mark.parametrize(
    "layout, pattern",
    [
        (layout_missing, "data does not exist"),
        (layout_file, "data is not a folder"),
        (layout_junk_only, "data: no class sub-folders"),
        (layout_one_class, "data: need at least 2 classes, found 1 \\('only'\\)"),
    ],
)
def test_load_image_folder_bad_layout(tmp_path, layout, pattern):
    root = tmp_path / "data"
    layout(root)
    with pytest.raises(DeepnotesError, match=pattern) as e:
        images.load_image_folder(root, size=4)
    assert str(root) in str(e.value)


def test_load_image_folder_empty_class(tmp_path):
    root = tmp_path / "data"
    save(root / "a" / "a.png", solid("L", (2, 2), 0))
    (root / "b").mkdir()
    (root / "b" / ".DS_Store").write_bytes(b"junk")
    (root / "b" / "list.csv").write_text("1,2")
    with pytest.raises(DeepnotesError, match="empty class folder") as e:
        images.load_image_folder(root, size=4)
    assert str(root / "b") in str(e.value)


def make_bad_folder(root: Path) -> list[Path]:
    save(root / "a" / "good.png", solid("RGB", (4, 4), "green"))
    save(root / "b" / "good.png", solid("RGB", (4, 4), "blue"))
    big = save(root / "a" / "bomb.png", solid("L", (40, 40), 0))  # over the patched limit
    empty = root / "a" / "empty.jpg"
    empty.write_bytes(b"")
    fake = root / "b" / "fake.png"
    fake.write_text("I am a text file")
    good = (root / "b" / "good.png").read_bytes()
    cut = root / "b" / "truncated.png"
    cut.write_bytes(good[: len(good) // 2])
    return [big, empty, fake, cut]


@pytest.fixture
def image_warnings():
    """The warnings the image reader logs (caught on its own logger: the CLI's tests stop the
    package's records from reaching the root)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    level = images.log.level
    images.log.addHandler(handler)
    images.log.setLevel(logging.WARNING)
    yield records
    images.log.removeHandler(handler)
    images.log.setLevel(level)


def test_bad_files_listed(tmp_path, monkeypatch, image_warnings):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    root = tmp_path / "data"
    bad = make_bad_folder(root)
    with pytest.raises(DeepnotesError) as e:
        images.load_image_folder(root, size=4)
    message = str(e.value)
    assert "4 unreadable image files" in message
    assert str(bad[0]) in message and "above the limit of 1000" in message
    assert str(bad[1]) in message
    assert "and 1 more (all listed above)" in message
    assert "--skip-bad trains without them" in message
    assert "\n" not in message
    listed = [r.getMessage() for r in image_warnings]
    for path in bad:  # every one, the fourth too, before the error
        assert sum(f"unreadable image {path} (" in line for line in listed) == 1, listed


def test_skip_bad_records_paths(tmp_path, monkeypatch, image_warnings):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    root = tmp_path / "data"
    bad = make_bad_folder(root)
    data = images.load_image_folder(root, size=4, skip_bad=True)
    assert sorted(data.skipped) == sorted(str(p) for p in bad)
    assert [Path(p).name for p in data.sources] == ["good.png", "good.png"]  # a/ and b/
    listed = " ".join(r.getMessage() for r in image_warnings)
    assert all(f"unreadable image {path} (" in listed for path in bad), listed
    assert "skipped the 4 unreadable image files listed above" in listed
    assert data.x.shape == (2, 3, 4, 4)
    assert data.y.tolist() == [0, 1]


def test_skip_bad_class_left_empty(tmp_path):
    root = tmp_path / "data"
    save(root / "a" / "good.png", solid("L", (4, 4), 0))
    (root / "b").mkdir()
    (root / "b" / "zero.png").write_bytes(b"")
    with pytest.raises(DeepnotesError, match="no readable images left") as e:
        images.load_image_folder(root, size=4, skip_bad=True)
    assert str(root / "b") in str(e.value)


def test_pillow_decompression_bomb_is_a_bad_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own warning, then error
    root = tmp_path / "data"
    save(root / "a" / "warn.png", solid("L", (12, 12), 0))  # > 100: a warning made an error
    save(root / "a" / "ok.png", solid("L", (5, 5), 0))
    save(root / "b" / "error.png", solid("L", (20, 20), 0))  # > 200: Pillow's error
    save(root / "b" / "ok.png", solid("L", (5, 5), 0))
    data = images.load_image_folder(root, size=4, skip_bad=True)
    assert [Path(p).name for p in data.skipped] == ["warn.png", "error.png"]


def test_progress_bar_on_stderr(tmp_path, capsys):
    root = tmp_path / "data"
    save(root / "a" / "a.png", solid("L", (2, 2), 0))
    save(root / "b" / "b.png", solid("L", (2, 2), 0))
    images.load_image_folder(root, size=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "2/2" in captured.err


def test_load_image(tmp_path):
    rgba = save(tmp_path / "x.png", solid("RGBA", (10, 20), (255, 0, 0, 0)))
    x = images.load_image(rgba, size=6, channels=3)
    assert x.shape == (3, 6, 6) and x.dtype == torch.uint8
    assert (x == 255).all()
    grey = images.load_image(save(tmp_path / "r.png", solid("RGB", (4, 4), (255, 0, 0))), 4, 1)
    assert grey.shape == (1, 4, 4) and grey[0, 0, 0] == 76  # ITU-R 601 luma of pure red
    wide = images.load_image(save(tmp_path / "w.png", grey16(257 * 7)), size=3, channels=3)
    assert wide.shape == (3, 3, 3) and (wide == 7).all()


def test_load_image_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DeepnotesError, match=r"bad.jpg: unreadable image"):
        images.load_image(bad, size=4, channels=3)
    with pytest.raises(DeepnotesError, match=r"missing.png does not exist"):
        images.load_image(tmp_path / "missing.png", size=4, channels=3)
    with pytest.raises(DeepnotesError, match="channels=2"):
        images.load_image(bad, size=4, channels=2)
    with pytest.raises(DeepnotesError, match="size=0"):
        images.load_image(bad, size=0, channels=1)


# ---------------------------------------------------------------- CSV


def write_csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_csv_label_column_by_name(tmp_path):
    path = write_csv(tmp_path, "age,label,height\n30,10,1.5\n40,2,1.75\n\n50,1,-2e3\n\n")
    data = tables.load_csv(path)
    assert data.classes == ["1", "2", "10"]  # numeric order, not "1" < "10" < "2"
    assert data.x.dtype == torch.float32 and data.x.shape == (3, 2)
    assert data.x.tolist() == [[30.0, 1.5], [40.0, 1.75], [50.0, -2000.0]]
    assert data.y.dtype == torch.int64 and data.y.tolist() == [2, 1, 0]
    assert data.kind == "table" and data.in_channels == 2
    assert tables.read_header(path) == ["age", "label", "height"]
    assert tables.columns(path) == (["age", "height"], "label")


def test_load_csv_last_column_and_explicit(tmp_path):
    path = write_csv(tmp_path, "\ufeffa, b ,species\n1,2,setosa\n3,4, virginica\n5,6,iris x\n")
    data = tables.load_csv(path)
    assert data.classes == ["iris x", "setosa", "virginica"]
    assert data.y.tolist() == [1, 2, 0]
    assert tables.read_header(path) == ["a", "b", "species"]
    numbers = write_csv(tmp_path, "a,b,c\n1,2.5,3\n4,5,6\n7,8,9\n", name="n.csv")
    data = tables.load_csv(str(numbers), label_column="a")
    assert data.classes == ["1", "4", "7"]
    assert data.x.tolist() == [[2.5, 3.0], [5.0, 6.0], [8.0, 9.0]]
    assert tables.columns(numbers, label_column="b") == (["a", "c"], "b")


@pytest.mark.parametrize(
    "text, label_column, pattern",
    [
        ("", None, "data.csv: empty file"),
        ("\n\n", None, "data.csv: empty file"),
        ("a,b,label\n", None, "data.csv: header only, no data rows"),
        ("a,b\n1,2\n", "target", "label column 'target' not in the header; columns: a, b"),
        ("x\n1\n2\n", None, "only one column"),
        (
            "name,age,label\n" + "x,1,0\n" * 15 + "y,abc,1\n",
            "label",
            "data.csv line 2, column 'name': 'x' is not a number",
        ),
        (
            "height,age,label\n" + "1,1,0\n" * 15 + "1,abc,1\n",
            None,
            "data.csv line 17, column 'age': 'abc' is not a number",
        ),
        ("a,b,label\n1,,0\n", None, "data.csv line 2, column 'b': '' is not a number"),
        ("review,label\nhello there,1\n", None, "data.csv line 2, column 'review': 'hello "
         "there' is not a number; a CSV of texts has a 'text' and a 'label' column"),
        ("a,b,label\n1,2,0\n1,2\n", None, "data.csv line 3: expected 3 cells, found 2"),
        ("a,b,label\n1,2,0\n1,2,3,4\n", None, "data.csv line 3: expected 3 cells, found 4"),
        (
            "a,b,label\n1,2,0\n1,nan,1\n2,inf,0\n1e39,1,1\n",
            None,
            "data.csv: 3 NaN or infinite feature values .*first at line 3, column 'b'",
        ),
        ("a,b,label\n1,2,cat\n3,4,cat\n", None, "need at least 2 classes in column 'label'.*'cat'"),
        ("a,b,label\n1,2,cat\n3,4,  \n", None, "data.csv line 3: empty label"),
        ("a,b,label\n1,2,0\n3,4,1\n5,6,NaN\n", None,
         "data.csv line 4: label 'NaN' marks a missing value, not a class"),
        ("a,b,label\n1,2,cat\n3,4, ? \n", None, "data.csv line 3: label '\\?' marks a missing"),
    ],
)
def test_load_csv_errors(tmp_path, text, label_column, pattern):
    path = write_csv(tmp_path, text)
    with pytest.raises(DeepnotesError, match=pattern) as e:
        tables.load_csv(path, label_column=label_column)
    assert "\n" not in str(e.value)


def test_load_csv_missing_or_folder(tmp_path):
    with pytest.raises(DeepnotesError, match=r"nope.csv does not exist"):
        tables.load_csv(tmp_path / "nope.csv")
    with pytest.raises(DeepnotesError, match="is not a file"):
        tables.load_csv(tmp_path)


def test_load_csv_not_utf8(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,label\n1,0\n2,\xff\xfe\n")
    with pytest.raises(DeepnotesError, match=r"data.csv line 3: not UTF-8 text \(byte 0xff at col"):
        tables.load_csv(path)
