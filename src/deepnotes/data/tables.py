"""A CSV file of numeric features and one label column, read into a table Dataset.

The first row is the header. The label column is ``label_column`` if given, else the column named
``label``, else the last one; every other column is a numeric feature. Labels may be any strings;
the classes are the distinct labels, sorted numerically when all are numbers. Every fault (a
ragged row, a non-numeric cell, NaN or inf, a single class) is reported with its line number.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import torch

from deepnotes.data.dataset import IGNORE, Dataset
from deepnotes.errors import DeepnotesError

DEFAULT_LABEL = "label"


def read_header(path: str | os.PathLike) -> list[str]:
    """The column names in the CSV file's first row (whitespace stripped)."""
    path = _check_file(path)
    try:
        with _open(path) as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError:
        _raise_not_utf8(path)
    if not header or not any(cell.strip() for cell in header):
        raise DeepnotesError(f"{path}: empty file; expected a header row and data rows")
    return [cell.strip() for cell in header]


def columns(path: str | os.PathLike, label_column: str | None = None) -> tuple[list[str], str]:
    """(the feature column names in the order of ``load_csv(path).x``, the label column's name:
    ``label_column``, else ``label``, else the last column)."""
    header = read_header(path)
    label = _label_index(header, label_column, Path(path))
    return [name for i, name in enumerate(header) if i != label], header[label]


def load_csv(path: str | os.PathLike, label_column: str | None = None) -> Dataset:
    """Read features as float32 (m, n_x) and labels as int64 class indices (m,)."""
    path = _check_file(path)
    header = read_header(path)
    label = _label_index(header, label_column, path)
    if len(header) < 2:
        raise DeepnotesError(
            f"{path}: only one column ({header[0]!r}); expected feature columns and a label column"
        )
    cells, labels, lines = _read_rows(path, len(header), label)
    if not labels:
        raise DeepnotesError(f"{path}: header only, no data rows")
    features = [name for i, name in enumerate(header) if i != label]
    x = _to_floats(cells, features, lines, path)
    classes = _sorted_classes(set(labels))
    if len(classes) < 2:
        raise DeepnotesError(
            f"{path}: need at least 2 classes in column {header[label]!r}, found "
            f"{len(classes)} ({classes[0]!r})"
        )
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[s] for s in labels], dtype=torch.int64)
    return Dataset(str(path), torch.from_numpy(x), y, classes)


def load_features(path: str | os.PathLike, features: list[str] | None, width: int,
                  label: str | None = None) -> tuple[torch.Tensor, list[int]]:
    """Rows to classify, parsed as :func:`load_csv` parses a training file: features as float32
    (m, n_x) in the training columns' order, and each row's line number.

    ``features``: the training file's feature columns, by name, in any order here; ``label``,
    its label column, is the one other column allowed (ignored: it may be missing or empty).
    ``features`` None (names unknown, e.g. a bundled data set): the columns in order, ``width``
    features, or ``width`` + 1 with the label column (``label``, else ``label``, else the last)
    left out.
    """
    path = _check_file(path)
    header = read_header(path)
    columns = _feature_columns(path, header, features, width, label)
    rows, lines = _read_table(path, len(header))
    if not rows:
        raise DeepnotesError(f"{path}: header only, no data rows")
    cells = [[row[c] for c in columns] for row in rows]
    x = _to_floats(cells, [header[c] for c in columns], lines, path)
    return torch.from_numpy(x), lines


def _feature_columns(path: Path, header: list[str], features: list[str] | None, width: int,
                     label: str | None) -> list[int]:
    """The positions in ``header`` of the run's features, in the run's order."""
    if features is None:
        if len(header) == width + 1:
            drop = _label_index(header, label if label in header else None, path)
            return [i for i in range(len(header)) if i != drop]
        if len(header) != width:
            raise DeepnotesError(f"{path}: {len(header)} columns; expected the run's {width} "
                                 "feature columns, and its label column or none")
        return list(range(width))
    expected = ", ".join(features) + (f" (and {label!r}, ignored, or none)" if label else "")
    missing = [name for name in features if name not in header]
    extra = [name for name in header if name not in features and name != label]
    if missing or extra:
        what = (f"no column {missing[0]!r}" if missing else
                f"column {extra[0]!r} is not one the run was trained on")
        raise DeepnotesError(f"{path}: {what}; expected the columns {expected}")
    return [header.index(name) for name in features]


MISSING_CELLS = ("", "?")  # an empty cell or the course's "?": the label is unknown


def load_csv_targets(path: str | os.PathLike, targets: list[str]) -> Dataset:
    """Several binary tasks: every column in ``targets`` holds 0, 1 or nothing (empty or "?",
    a missing label); the other columns are numeric features. y is int64 (m, T) with missing
    labels as ``IGNORE`` (``multitask.MISSING`` is the same number); the classes are the task
    names."""
    path = _check_file(path)
    header = read_header(path)
    unknown = [t for t in targets if t not in header]
    if unknown or len(set(targets)) != len(targets):
        what = f"{unknown[0]!r} is not a column" if unknown else "a column is named twice"
        raise DeepnotesError(f"--targets {','.join(targets)}: {what}; columns of {path}: "
                             + ", ".join(header))
    if len(targets) < 2:
        raise DeepnotesError(f"--targets {targets[0]}: one task; for a single label column use "
                             f"--label-column {targets[0]}")
    columns = [header.index(t) for t in targets]
    if len(columns) == len(header):
        raise DeepnotesError(f"{path}: every column is a target; expected feature columns too")
    rows, lines = _read_table(path, len(header))
    if not rows:
        raise DeepnotesError(f"{path}: header only, no data rows")
    y = np.full((len(rows), len(columns)), IGNORE, dtype=np.int64)
    for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
        for j, c in enumerate(columns):
            cell = row[c].strip()
            if cell in ("0", "1"):
                y[i, j] = int(cell)
            elif cell not in MISSING_CELLS:
                raise DeepnotesError(f"{path} line {line}, column {header[c]!r}: {cell!r}; "
                                     "expected 0, 1 or an empty cell (label missing)")
    features = [name for i, name in enumerate(header) if i not in columns]
    cells = [[cell for i, cell in enumerate(row) if i not in columns] for row in rows]
    x = _to_floats(cells, features, lines, path)
    return Dataset(str(path), torch.from_numpy(x), torch.from_numpy(y), list(targets))


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DeepnotesError(f"{path} {what}; expected a CSV file")
    return path


def _open(path: Path):
    """Open as text, ignoring a UTF-8 byte-order mark (Excel writes one)."""
    return open(path, newline="", encoding="utf-8-sig")


def _raise_not_utf8(path: Path) -> None:
    """Name the first line that is not valid UTF-8."""
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DeepnotesError(
                f"{path} line {number}: not UTF-8 text (byte 0x{line[e.start]:02x} at column "
                f"{e.start + 1}); save the file as UTF-8"
            ) from None
    raise DeepnotesError(f"{path}: not UTF-8 text; save the file as UTF-8")


def _label_index(header: list[str], label_column: str | None, path: Path) -> int:
    if label_column is None:
        return header.index(DEFAULT_LABEL) if DEFAULT_LABEL in header else len(header) - 1
    if label_column not in header:
        raise DeepnotesError(
            f"{path}: label column {label_column!r} not in the header; columns: "
            + ", ".join(header)
        )
    return header.index(label_column)


def _read_rows(path: Path, width: int, label: int) -> tuple[list[list[str]], list[str], list[int]]:
    """Feature cells, label strings and line numbers of the data rows; blank rows skipped."""
    rows, lines = _read_table(path, width)
    for row, line in zip(rows, lines, strict=True):
        if not row[label].strip():
            raise DeepnotesError(f"{path} line {line}: empty label")
        if _is_missing(row[label]):
            raise DeepnotesError(f"{path} line {line}: label {row[label].strip()!r} marks a "
                                 "missing value, not a class; drop the row or give its class")
    return ([row[:label] + row[label + 1 :] for row in rows], [row[label].strip() for row in rows],
            lines)


def _read_table(path: Path, width: int) -> tuple[list[list[str]], list[int]]:
    """The data rows (``width`` cells each) and their line numbers; blank rows skipped."""
    rows, lines = [], []
    with _open(path) as f:
        reader = csv.reader(f)
        try:
            next(reader)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != width:
                    raise DeepnotesError(
                        f"{path} line {reader.line_num}: expected {width} cells, found {len(row)}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
        except UnicodeDecodeError:
            _raise_not_utf8(path)
        except csv.Error as e:
            raise DeepnotesError(f"{path} line {reader.line_num}: bad CSV ({e})") from None
    return rows, lines


def _to_floats(
    cells: list[list[str]], features: list[str], lines: list[int], path: Path
) -> np.ndarray:
    """Parse the feature cells into float32, naming the first bad or non-finite cell."""
    try:
        x = np.array(cells, dtype=str).astype(np.float64)
    except ValueError:
        _raise_first_bad_cell(cells, features, lines, path)
        x = np.array([[float(cell) for cell in row] for row in cells], dtype=np.float64)
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DeepnotesError(
            f"{path}: {int(bad.sum())} NaN or infinite feature values (or beyond float32); "
            f"first at line {lines[row]}, column {features[col]!r}"
        )
    return x


def _raise_first_bad_cell(
    cells: list[list[str]], features: list[str], lines: list[int], path: Path
) -> None:
    for row, line in zip(cells, lines, strict=True):
        for name, cell in zip(features, row, strict=True):
            try:
                float(cell)
            except ValueError:
                words = " " in cell.strip()  # text where a feature was expected
                hint = "; a CSV of texts has a 'text' and a 'label' column" if words else ""
                raise DeepnotesError(
                    f"{path} line {line}, column {name!r}: {cell!r} is not a number{hint}"
                ) from None


def _is_missing(cell: str) -> bool:
    """``?`` (the course's unknown value) or a spelling of NaN, as pandas writes it."""
    cell = cell.strip()
    return cell in MISSING_CELLS or cell.lower() in ("nan", "+nan", "-nan")


def _sorted_classes(labels: set[str]) -> list[str]:
    """Numerically if every label is a finite number, else alphabetically."""
    try:
        numbers = {s: float(s) for s in labels}
    except ValueError:
        return sorted(labels)
    if not all(math.isfinite(v) for v in numbers.values()):
        return sorted(labels)
    return sorted(labels, key=lambda s: (numbers[s], s))
