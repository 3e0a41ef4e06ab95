#!/usr/bin/env bash
# What benchmarks/gpu_check.sh needs on a GPU machine with no network (no PyPI, no Debian
# mirror), in one folder of about 45 MB: gensim's wheel (its test data cut to the files deepnotes
# reads) and Optuna's with what the H200 image lacks of its needs, for that machine's Python, and
# Fashion-MNIST and the GCIDE text, xz-compressed.
#
#     bash benchmarks/offline_bundle.sh pack DIR [PYTHON_VERSION]  # here (default 3.12)
#     bash benchmarks/offline_bundle.sh unpack DIR [ROOT]          # there, as root (ROOT: /)
#     PYTHONPATH=/tmp/site bash benchmarks/gpu_check.sh
#
# pack needs dataset-fashion-mnist and dict-gcide installed here. unpack puts the files where
# those Debian packages put theirs (under ROOT), and the wheels into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-} dir=${2:-}
if [ -z "$dir" ] || { [ "$mode" != pack ] && [ "$mode" != unpack ]; }; then
    echo "usage: $0 pack DIR [PYTHON_VERSION] | unpack DIR [ROOT]" >&2
    exit 2
fi
FMNIST=usr/share/datasets/fashion-mnist
GCIDE=usr/share/dictd/gcide.dict.dz

if [ "$mode" = pack ]; then
    for f in "/$FMNIST" "/$GCIDE"; do
        [ -e "$f" ] || { echo "$f: not found; apt-get install dataset-fashion-mnist dict-gcide" >&2
                         exit 2; }
    done
    mkdir -p "$dir/wheels"
    python -m pip download -q --no-deps --only-binary=:all: -d "$dir/wheels" \
        --python-version "${3:-3.12}" --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 gensim smart_open \
        optuna alembic sqlalchemy Mako colorlog  # the rest Optuna needs is on the H200 image
    python - "$dir" "/$FMNIST" "/$GCIDE" <<'PY'
import gzip, lzma, pathlib, shutil, sys, zipfile
from benchmarks.word2vec import text8_style
out, fmnist, gcide = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
# gensim's wheel is 22 of its 28 MB test data: keep the files deepnotes reads, drop the rest
# (and their lines in RECORD), so the bundle stays under the device's 64 MiB
keep = {"questions-words.txt", "lee_background.cor", "pang_lee_polarity.cor", "wordsim353.tsv"}
wheel = next((out / "wheels").glob("gensim-*.whl"))
slim = wheel.with_suffix(".slim")
dropped = lambda name: "/test/test_data/" in name and name.rsplit("/", 1)[-1] not in keep
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if dropped(item.filename):
            continue
        data = src.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True)
                            if not dropped(line.split(b",", 1)[0].decode()))
        dst.writestr(item, data)
slim.replace(wheel)
for f in sorted(fmnist.glob("*-ubyte.gz")):
    with gzip.open(f) as src, lzma.open(out / (f.name[:-3] + ".xz"), "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
text8_style(gcide, str(out / "gcide.txt"))  # the words alone: a third smaller than the markup
with open(out / "gcide.txt", "rb") as src, lzma.open(out / "gcide.txt.xz", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
(out / "gcide.txt").unlink()
PY
    du -sh "$dir"
else
    root=${3:-/}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site "$dir"/wheels/*.whl
    python3 - "$dir" "$root/$FMNIST" "$root/$GCIDE" <<'PY'
import gzip, lzma, os, pathlib, shutil, sys
src_dir, fmnist, gcide = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
fmnist.mkdir(parents=True, exist_ok=True)
for f in sorted(src_dir.glob("*-ubyte.xz")):
    with lzma.open(f) as src, open(fmnist / f.name[:-3], "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
os.makedirs(os.path.dirname(gcide), exist_ok=True)
with lzma.open(src_dir / "gcide.txt.xz") as src, gzip.open(gcide, "wb", compresslevel=1) as dst:
    shutil.copyfileobj(src, dst, 1 << 20)  # the words as text8_style writes them: unchanged
PY
    echo "unpacked: $root/$FMNIST, $root/$GCIDE, gensim and optuna in /tmp/site"
fi
