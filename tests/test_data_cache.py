"""The decoded image cache (deepnotes.data.cache): built once and reused, rebuilt when the folder
changes or the cache is damaged, safe against a killed build, and read by batches that equal the
in-memory ones; a run through the cache trains exactly as a run in memory."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_photos
from deepnotes.data import Batches, Normalizer, images
from deepnotes.data import cache as image_cache
from deepnotes.data.augment import Augment
from deepnotes.data.images import load_image_folder
from deepnotes.data.loader import quasi_random
from deepnotes.errors import DeepnotesError
from deepnotes.runs import session


@pytest.fixture
def folder(tmp_path):
    return write_photos(tmp_path / "photos")


def cached(folder: Path, cache_dir: Path, **kw):
    return load_image_folder(folder, 8, cache="on", cache_dir=cache_dir, **kw)


def count_decodes(monkeypatch) -> list:
    """Count the files decoded (cache builds run in this process for a single block)."""
    seen: list = []
    read = images._read

    def counting(path, size):
        seen.append(path)
        return read(path, size)

    monkeypatch.setattr(images, "_read", counting)
    return seen


@pytest.mark.parametrize("grey", [False, True])
def test_the_cache_holds_what_memory_holds(tmp_path, grey):
    folder = write_photos(tmp_path / "photos", grey=grey)
    memory = load_image_folder(folder, 8, cache="off")
    disk = cached(folder, tmp_path / "cache")
    assert disk.on_disk and not memory.on_disk
    assert disk.x.shape == memory.x.shape == (36, 1 if grey else 3, 8, 8)
    assert torch.equal(disk.x, memory.x) and torch.equal(disk.y, memory.y)
    assert disk.classes == memory.classes


def test_a_built_cache_is_reused_without_decoding(folder, tmp_path, monkeypatch):
    cached(folder, tmp_path / "cache")
    decoded = count_decodes(monkeypatch)
    again = cached(folder, tmp_path / "cache")
    assert decoded == [] and len(again.y) == 36
    assert len(list((tmp_path / "cache" / "images").iterdir())) == 1


def test_a_changed_file_gives_a_new_cache(folder, tmp_path):
    first = cached(folder, tmp_path / "cache")
    path = folder / "class0" / "0.png"
    Image.fromarray(np.full((10, 10, 3), 255, np.uint8)).save(path)
    second = cached(folder, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "images").iterdir())) == 2
    assert torch.equal(second.x[0], torch.full((3, 8, 8), 255, dtype=torch.uint8))
    assert not torch.equal(first.x[0], second.x[0])


def test_a_corrupt_cache_is_rebuilt_with_one_warning(folder, tmp_path):
    good = cached(folder, tmp_path / "cache").x.clone()
    (entry,) = (tmp_path / "cache" / "images").iterdir()
    records = entry / "records.u8"
    data = bytearray(records.read_bytes())
    data[100] ^= 0xFF
    records.write_bytes(bytes(data))
    with warnings_of("deepnotes.data.cache") as warned:
        again = cached(folder, tmp_path / "cache")
    assert torch.equal(again.x, good)
    assert len(warned) == 1 and "corrupt" in warned[0] and "rebuilding" in warned[0]


@contextlib.contextmanager
def warnings_of(name: str):
    """The messages of the warnings logger ``name`` logs meanwhile (whatever the CLI's logging
    set up before: a handler of our own on the logger itself)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_a_truncated_or_unfinished_cache_is_rebuilt(folder, tmp_path):
    good = cached(folder, tmp_path / "cache").x.clone()
    (entry,) = (tmp_path / "cache" / "images").iterdir()
    (entry / "meta.json").unlink()  # as if a build had been cut before its last file
    assert torch.equal(cached(folder, tmp_path / "cache").x, good)
    whole = json.loads((entry / "meta.json").read_text())
    for meta in ({k: v for k, v in whole.items() if k != "crc32"},
                 {k: v for k, v in whole.items() if k != "bad"}, {**whole, "bad": 5},
                 {**whole, "shape": "x"}, []):  # fields missing or of the wrong type
        (entry / "meta.json").write_text(json.dumps(meta))
        assert torch.equal(cached(folder, tmp_path / "cache").x, good)
    with open(entry / "records.u8", "r+b") as f:
        f.truncate(10)
    assert torch.equal(cached(folder, tmp_path / "cache").x, good)


KILLS = {  # where a build dies: while decoding (the 5th file), or as it writes meta.json
    "decoding": "import itertools\nn = itertools.count()\nread = images._read\n"
                "images._read = lambda p, s: os._exit(9) if next(n) == 5 else read(p, s)\n",
    "committing": "from deepnotes import atomic\natomic.write_text = lambda *a: os._exit(9)\n",
}


@pytest.mark.slow  # starts processes
@pytest.mark.parametrize("where", sorted(KILLS))
def test_a_killed_build_leaves_no_cache_and_the_next_build_cleans_up(folder, tmp_path, where):
    """A build killed midway (os._exit): nothing is committed, its folder is removed by the next
    build, which succeeds."""
    script = ("import os\nfrom deepnotes.data import images\n" + KILLS[where] +
              f"images.load_image_folder({str(folder)!r}, 8, cache='on', "
              f"cache_dir={str(tmp_path)!r})\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 9, run.stderr
    leftovers = sorted(p.name for p in (tmp_path / "images").iterdir())
    key = leftovers[0].split(".")[0]  # its build folder and its builder's lock, nothing else
    assert len(leftovers) == 2 and ".building." in leftovers[0] and leftovers[1] == f"{key}.lock"
    data = load_image_folder(folder, 8, cache="on", cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "images").iterdir()] == [key]
    assert len(data.y) == 36


def test_unreadable_files_are_refused_or_skipped_as_in_memory(folder, tmp_path):
    (folder / "class1" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DeepnotesError, match="1 unreadable image files.*broken.png"):
        cached(folder, tmp_path / "cache")
    data = cached(folder, tmp_path / "cache", skip_bad=True)
    memory = load_image_folder(folder, 8, cache="off", skip_bad=True)
    assert len(data.y) == 36 and torch.equal(data.x, memory.x) and torch.equal(data.y, memory.y)
    assert data.skipped == memory.skipped
    assert data.sources == memory.sources and len(data.sources) == 36
    assert not any(p.endswith("broken.png") for p in data.sources)


@pytest.mark.parametrize("ranks", [1, 2])
def test_streamed_batches_equal_batches_in_memory(folder, tmp_path, ranks):
    """Each rank reads its own slice of every batch from the cache (a batch ahead, augmented
    with the whole batch's draws); put together, the slices are the batches in memory."""
    memory = load_image_folder(folder, 8, cache="off")
    disk = cached(folder, tmp_path / "cache")
    idx = torch.arange(30)
    norm = Normalizer.fit(memory.x[idx])
    by_blocks = Normalizer.fit_blocks(disk.x, idx)
    assert by_blocks.mean == pytest.approx(norm.mean, abs=1e-12)
    assert by_blocks.std == pytest.approx(norm.std, abs=1e-12)
    aug = Augment(("resized-crop", "crop", "flip"))
    a = Batches(memory.x, memory.y, idx, 8, norm, shuffle=True, seed=3, augment=aug)
    b = [Batches(disk.x, disk.y, idx, 8, by_blocks, shuffle=True, seed=3, stream=True,
                 augment=aug, shard=(r, ranks)) for r in range(ranks)]
    whole = list(a.epoch(1))
    for epoch in (1, 1):  # again: the reused buffers hold nothing of the last epoch
        parts = [list(rank.epoch(epoch)) for rank in b]
        assert len(whole) == 4 and all(len(p) == 4 for p in parts)
        for n, (xa, ya) in enumerate(whole):
            assert torch.equal(xa, torch.cat([p[n][0] for p in parts]))
            assert torch.equal(ya, torch.cat([p[n][1] for p in parts]))


@pytest.mark.slow  # starts a process
def test_a_second_process_waits_for_the_build_and_decodes_nothing(folder, tmp_path,
                                                                   monkeypatch):
    """While one process builds a cache (slowly), another that needs it waits on its lock and
    then opens what was built."""
    script = ("import time\nfrom deepnotes.data import images\nread = images._read\n"
              "def slow(path, size):\n    time.sleep(0.05)\n    return read(path, size)\n"
              "images._read = slow\n"
              f"images.load_image_folder({str(folder)!r}, 8, cache='on', "
              f"cache_dir={str(tmp_path)!r})\n")
    builder = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # until the builder holds the lock
            if list((tmp_path / "images").glob("*.lock")) or builder.poll() is not None:
                break
            time.sleep(0.025)
        decoded = count_decodes(monkeypatch)
        was_building = builder.poll() is None
        data = load_image_folder(folder, 8, cache="on", cache_dir=tmp_path)
        assert builder.wait(60) == 0, builder.stderr.read()
    finally:
        builder.kill()
        builder.wait()
    assert decoded == [] and data.on_disk
    memory = load_image_folder(folder, 8, cache="off")
    assert torch.equal(data.x, memory.x) and torch.equal(data.y, memory.y)
    left = [p.name for p in (tmp_path / "images").iterdir()]
    assert was_building and len(left) == 1 and "." not in left[0]  # the cache; no lock, no work


def test_the_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPNOTES_CACHE_DIR", str(tmp_path / "a"))
    assert image_cache.cache_root() == tmp_path / "a"
    assert image_cache.cache_root(tmp_path / "b") == tmp_path / "b"
    monkeypatch.delenv("DEEPNOTES_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.cache_root() == tmp_path / "xdg" / "deepnotes"


@pytest.mark.slow
def test_a_run_through_the_cache_trains_exactly_as_in_memory(folder, tmp_path, cli):
    common = ("--data", folder, "--model", "fastnet", "--image-size", 12, "--epochs", 2,
              "--batch-size", 16, "--out", tmp_path / "runs", "--cache-dir", tmp_path / "cache",
              "--quiet")
    for mode in ("off", "on"):
        rc, _, err = cli("train", *common, "--data-cache", mode, "--name", mode)
        assert rc == 0, err
    runs = tmp_path / "runs"
    metrics = [json.loads((runs / m / "metrics.json").read_text()) for m in ("off", "on")]
    assert metrics[0] == metrics[1]
    weights = [(runs / m / "model.safetensors").read_bytes() for m in ("off", "on")]
    assert weights[0] == weights[1]
    config = json.loads((runs / "on" / "config.json").read_text())
    assert config["data_cache"] == "on" and config["image_size"] == 12
    assert config["data_order"] == "random"  # auto, decided: the cache fits in memory
    assert config["input_shape"] == [3, 12, 12]
    rc, out, err = cli("evaluate", runs / "on", "--split", "test")
    assert rc == 0 and f"{metrics[1]['test']['accuracy']:.4f}" in out


def _grey_square(path, size):
    """A stand-in decoder: every file is a (size, size) grey image of one value."""
    return np.full((size, size), 7, np.uint8)


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no RssAnon in /proc/self/status")


@pytest.mark.slow  # reads 196 MiB
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_reading_the_cache_does_not_grow_anonymous_memory(tmp_path):
    """Every record read (summed) and two epochs of batches drawn from a 196 MiB cache: the
    pages come from the file (page cache), not the process's anonymous memory. What may grow
    is a few batches' worth that the allocator keeps (the prefetch thread's, the normalised
    batches'), the same for any size of data."""
    m = 16384
    files = []
    for i in range(m):
        path = tmp_path / "photos" / f"c{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        files.append(path)
    labels = [i % 2 for i in range(m)]
    built = image_cache.open_or_build(tmp_path / "photos", files, labels, 112, _grey_square,
                                      tmp_path / "cache")
    x = image_cache.open_or_build(tmp_path / "photos", files, labels, 112, _grey_square,
                                  tmp_path / "cache").x  # reopened: mapped, checked
    assert built.x.shape == (m, 1, 112, 112)  # 196 MiB
    del built
    before = rss_anon()
    assert int(x.sum(dtype=torch.int64)) == 7 * x.numel()
    batches = Batches(x, torch.zeros(m, dtype=torch.int64), torch.arange(m), 64,
                      Normalizer([0.5], [0.25], 1 / 255), shuffle=True, stream=True)
    for epoch in range(2):
        assert sum(len(xb) for xb, _ in batches.epoch(epoch)) == m
    grown = rss_anon() - before  # in memory it would be the whole 196 MiB
    assert grown < 64 * 2**20, f"anonymous memory grew by {grown / 2**20:.1f} MiB"


def test_quasi_random_order_reads_a_window_of_shuffled_blocks_at_a_time():
    indices = torch.randperm(10_000, generator=torch.Generator().manual_seed(1))[:9_000]
    order = quasi_random(indices, torch.Generator().manual_seed(5), block=50, window=1_000)
    again = quasi_random(indices, torch.Generator().manual_seed(5), block=50, window=1_000)
    other = quasi_random(indices, torch.Generator().manual_seed(6), block=50, window=1_000)
    assert torch.equal(order, again) and not torch.equal(order, other)
    assert torch.equal(order.sort().values, indices.sort().values)  # each example once
    rank = torch.empty(10_000, dtype=torch.int64)
    rank[indices.sort().values] = torch.arange(9_000)  # place in file order
    block_of = rank[order] // 50
    for start in range(0, 9_000, 1_000):  # a window: 20 whole blocks, shuffled together
        window = block_of[start:start + 1_000]
        assert len(window.unique()) == 20
        assert not torch.equal(window, window.sort().values)
    assert not torch.equal(block_of[::1_000], block_of[::1_000].sort().values)  # blocks moved


def test_quasi_random_batches_resume_and_shard_like_random_ones(folder, tmp_path):
    disk = cached(folder, tmp_path / "cache")
    norm = Normalizer.fit_blocks(disk.x, torch.arange(36))
    kw = dict(shuffle=True, seed=4, stream=True, order="quasi-random")
    whole = Batches(disk.x, disk.y, torch.arange(36), 6, norm, **kw)
    batches = list(whole.epoch(2))
    assert torch.equal(torch.cat([y for _, y in batches]).sort().values, disk.y.sort().values)
    later = list(whole.epoch(2, start=4))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[4:], later))
    halves = [list(Batches(disk.x, disk.y, torch.arange(36), 6, norm, shard=(r, 2),
                           **kw).epoch(2)) for r in range(2)]
    for n, (xb, _) in enumerate(batches):
        assert torch.equal(xb, torch.cat([halves[0][n][0], halves[1][n][0]]))
    with pytest.raises(DeepnotesError, match="--data-order sorted: expected one of random"):
        Batches(disk.x, disk.y, torch.arange(36), 6, norm, order="sorted")


def test_data_order_auto_is_quasi_random_for_a_cache_larger_than_memory(folder, tmp_path,
                                                                        monkeypatch):
    disk, memory = cached(folder, tmp_path / "cache"), load_image_folder(folder, 8, cache="off")
    assert session.data_order("auto", disk) == session.data_order("auto", memory) == "random"
    monkeypatch.setattr(session, "available_memory", lambda: disk.x.numel() - 1)
    assert session.data_order("auto", disk) == "quasi-random"
    assert session.data_order("auto", memory) == "random"  # in memory already
    assert session.data_order("random", disk) == "random"


def tiny_pngs(root: Path, n: int) -> Path:
    """``n`` 8x8 RGB PNGs in two class folders."""
    rng = np.random.default_rng(n)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
    for i in range(n):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"c{i % 2}" / f"{i}.png", compress_level=0)
    return root


@pytest.mark.slow  # makes 21,000 files, trains in four processes
@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux's /proc")
def test_training_through_the_cache_keeps_memory_flat_as_the_folder_grows(tmp_path,
                                                                          monkeypatch):
    """deepnotes train (LeNet-5, one epoch, the cache built, then reused) on 3,000 and on
    18,000 images (both built by 2 decoding workers): the peak anonymous memory (Pss_Anon) of
    the process and its workers grows by less than half of what the 15,000 more images take
    decoded (in memory they would all be held, and more while the statistics are computed)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from benchmarks.data_cache import PeakMemory

    peaks = {}
    for n in (3_000, 18_000):
        folder = tiny_pngs(tmp_path / f"photos{n}", n)
        for run in ("build", "reuse"):
            cmd = [sys.executable, "-m", "deepnotes", "train", "--data", str(folder), "--model",
                   "lenet5", "--epochs", "1", "--data-cache", "on", "--cache-dir",
                   str(tmp_path / "cache"), "--out", str(tmp_path / "runs"), "--quiet"]
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
            with PeakMemory(child.pid) as peak:
                _, err = child.communicate(timeout=300)
            assert child.returncode == 0, err
            peaks[n, run] = peak.peak_pss
    decoded = 15_000 * 3 * 32 * 32  # the records LeNet-5 reads, 32x32 RGB
    for run in ("build", "reuse"):
        grown = peaks[18_000, run] - peaks[3_000, run]
        assert grown < decoded / 2, f"{run}: grew by {grown / 2**20:.1f} MiB"
