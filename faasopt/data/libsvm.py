"""LIBSVM / svmlight text files: validate once (`scan_libsvm`), then read one block per worker.

A data line is ``label index:value index:value ...`` with 1-based, strictly increasing indices;
blank lines and lines starting with ``#`` are skipped and do not count as rows, and a trailing
``# comment`` on a data line is ignored. Labels equal to 1 (``+1``, ``1``, ``1.0``) mean +1; labels
equal to -1 or 0 mean -1; any other label is an error. Values must be finite.

Both entry points use one parser (`_parse_rows`), which works on bytes, validates every line it
parses and reports the first problem in file order as a `DataError` located at ``path:line``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import scipy.sparse as sp

from faasopt.data.blocks import Block, _count, block_range
from faasopt.errors import DataError

_LABELS: dict[bytes, float] = {
    b"1": 1.0,
    b"+1": 1.0,
    b"1.0": 1.0,
    b"+1.0": 1.0,
    b"-1": -1.0,
    b"-1.0": -1.0,
    b"0": -1.0,
    b"0.0": -1.0,
}
# A stripped feature text: tokens 'digits:value' separated by whitespace, no other colons.
_PAIRS = re.compile(rb"(?:[0-9]{1,18}:[^\s:]+(?:\s+|\Z))*")
_CHUNK_ROWS = 8192
_HASH = ord("#")


@dataclass(frozen=True)
class LibsvmInfo:
    """What `scan_libsvm` learnt of a valid file: its path, data row count and feature count."""

    path: str
    rows: int
    features: int


def _text(token: bytes, limit: int = 40) -> str:
    text = token.decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(token: bytes) -> float | None:
    """+1.0 or -1.0 for a valid label token, None otherwise."""
    try:
        value = float(token)
    except ValueError:
        return None
    if value == 1.0:
        return 1.0
    if value in (-1.0, 0.0):
        return -1.0
    return None


def _diagnose(features_text: bytes) -> str:
    """The message for a feature text that failed the fast path: its first bad token."""
    for token in features_text.split():
        index, sep, value = token.partition(b":")
        if not sep or not index.isdigit() or len(index) > 18 or not value or b":" in value:
            return f"expected 'index:value' with a positive integer index, got '{_text(token)}'"
        try:
            float(value)
        except ValueError:
            return f"expected a numeric value in '{_text(token)}', got '{_text(value)}'"
    return f"expected 'index:value' tokens, got '{_text(features_text)}'"


@dataclass
class _Chunk:
    """Rows parsed since the last check, as Python lists (cheap appends)."""

    labels: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class _Parsed:
    """Checked rows: concatenable pieces of labels, 0-based indices, values and row lengths."""

    rows: int = 0
    max_index: int = 0
    labels: list[np.ndarray] = field(default_factory=list)
    indices: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)


def _check_chunk(chunk: _Chunk, features: int | None, path: str, keep: bool, out: _Parsed) -> None:
    """Validate the indices and values of ``chunk`` (vectorized) and append it to ``out``.

    Raises the first problem by position (ties: index < 1, too large, not increasing, not finite).
    """
    if not chunk.labels:
        return
    idx = np.array(chunk.indices, dtype=np.int64)
    val = np.array(chunk.values, dtype=np.float64)
    counts = np.array(chunk.counts, dtype=np.int64)
    indptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    found: list[tuple[int, int, str]] = []  # (position, priority, message)

    def first(mask: np.ndarray, offset: int = 0) -> int | None:
        hits = np.flatnonzero(mask)
        return int(hits[0]) + offset if hits.size else None

    p = first(idx < 1)
    if p is not None:
        found.append((p, 0, f"expected a positive (1-based) feature index, got {idx[p]}"))
    if features is not None:
        p = first(idx > features)
        if p is not None:
            found.append((p, 1, f"expected feature indices at most {features}, got {idx[p]}"))
    if idx.size > 1:
        falls = idx[1:] <= idx[:-1]
        starts = indptr[1:-1]
        starts = starts[(starts > 0) & (starts < idx.size)]
        falls[starts - 1] = False  # a new row may start anywhere
        p = first(falls, offset=1)
        if p is not None:
            found.append(
                (
                    p,
                    2,
                    "expected feature indices strictly increasing within a line, "
                    f"got {idx[p]} after {idx[p - 1]}",
                )
            )
    p = first(~np.isfinite(val))
    if p is not None:
        found.append((p, 3, f"expected a finite value, got {val[p]} at index {idx[p]}"))
    if found:
        p, _, message = min(found)
        row = int(np.searchsorted(indptr, p, side="right")) - 1
        raise DataError(message, path=path, line=chunk.lines[row])
    out.rows += counts.size
    if idx.size:
        out.max_index = max(out.max_index, int(idx.max()))
    if keep:
        out.labels.append(np.array(chunk.labels, dtype=np.float64))
        out.indices.append(idx - 1)
        out.values.append(val)
        out.counts.append(counts)


@contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    with handle:
        yield handle


def _parse_rows(
    path: str,
    features: int | None,
    skip_rows: int = 0,
    max_rows: int | None = None,
    keep: bool = False,
) -> _Parsed:
    """Parse and validate data rows ``[skip_rows, skip_rows + max_rows)`` of the file.

    Earlier lines are only classified (data or not), never parsed; parsing stops after the last
    wanted row (``max_rows=None``: the end of the file). Rows are checked in chunks, and a
    syntax error first checks the rows before it, so the error reported is the first in the file.
    ``keep=False`` keeps only counts (for scanning files larger than memory).
    """
    out = _Parsed()
    chunk = _Chunk()
    lineno = 0
    with _open(path) as handle:
        if skip_rows:
            seen = 0
            for line in handle:
                lineno += 1
                stripped = line.lstrip()
                if stripped and stripped[0] != _HASH:
                    seen += 1
                    if seen == skip_rows:
                        break
            if seen < skip_rows:
                raise DataError(
                    f"expected more than {skip_rows} data rows, the file has {seen}", path=path
                )
        if max_rows is not None and max_rows <= 0:
            return out
        wanted = -1 if max_rows is None else max_rows
        labels, lines, counts = chunk.labels, chunk.lines, chunk.counts
        indices, values = chunk.indices, chunk.values

        def fail(message: str) -> DataError:
            _check_chunk(chunk, features, path, False, _Parsed())  # earlier problems first
            return DataError(message, path=path, line=lineno)

        for line in handle:
            lineno += 1
            if b"#" in line:
                line = line[: line.index(b"#")]
            parts = line.split(None, 1)
            if not parts:
                continue
            label = _LABELS.get(parts[0])
            if label is None:
                label = _label(parts[0])
                if label is None:
                    raise fail(f"expected a label +1, 1, -1 or 0, got '{_text(parts[0])}'")
            if len(parts) == 2:
                text = parts[1].rstrip()
                if _PAIRS.fullmatch(text) is None:
                    raise fail(_diagnose(text))
                fields = text.replace(b":", b" ").split()
                try:
                    row_values = list(map(float, fields[1::2]))
                except ValueError:
                    raise fail(_diagnose(text)) from None
                indices.extend(map(int, fields[0::2]))
                values.extend(row_values)
                counts.append(len(row_values))
            else:
                counts.append(0)
            labels.append(label)
            lines.append(lineno)
            wanted -= 1
            if wanted == 0:
                break
            if len(labels) >= _CHUNK_ROWS:
                _check_chunk(chunk, features, path, keep, out)
                chunk = _Chunk()
                labels, lines, counts = chunk.labels, chunk.lines, chunk.counts
                indices, values = chunk.indices, chunk.values
        _check_chunk(chunk, features, path, keep, out)
    if max_rows is not None and out.rows < max_rows:
        raise DataError(
            f"expected {skip_rows + max_rows} data rows, the file has {skip_rows + out.rows}",
            path=path,
        )
    return out


def _features(features: int | None) -> int | None:
    if features is None:
        return None
    features = _count(features, "feature count")
    if features < 1:
        raise DataError(f"expected at least 1 feature, got {features}")
    return features


def scan_libsvm(path: str | os.PathLike[str], features: int | None = None) -> LibsvmInfo:
    """Validate every data line of a LIBSVM file and count its rows and features.

    Reads the whole file once without keeping its data, so a coordinator can check a file and
    size its blocks before any worker reads one.

    Parameters
    ----------
    path
        The file.
    features
        The feature count; every index must be at most this. None infers it as the largest index.

    Raises
    ------
    DataError
        At ``path:line`` for the first malformed line; without a line for a missing or unreadable
        file, a file without data rows, or (``features=None``) a file without any feature index.
    """
    name = os.fspath(path)
    features = _features(features)
    parsed = _parse_rows(name, features)
    if parsed.rows == 0:
        raise DataError("expected at least one data row, found none", path=name)
    if features is None:
        if parsed.max_index == 0:
            raise DataError(
                "expected at least one 'index:value' to infer features, found none", path=name
            )
        features = parsed.max_index
    return LibsvmInfo(path=name, rows=parsed.rows, features=features)


def read_libsvm_block(
    path: str | os.PathLike[str], features: int, rows: int, block: int, blocks: int
) -> Block:
    """Read block ``block`` of ``blocks`` of a LIBSVM file of ``rows`` data rows.

    Parses only the rows ``block_bounds(rows, blocks)`` assigns to the block: earlier lines are
    skipped unparsed and reading stops after the block's last row, so a worker pays for its own
    rows (plus a cheap pass over the lines before them). ``rows`` and ``features`` come from
    `scan_libsvm`.

    Raises
    ------
    DataError
        At ``path:line`` for a malformed line of the block, or when the file has fewer rows.
    """
    name = os.fspath(path)
    features = _features(features)
    assert features is not None
    start, stop = block_range(rows, blocks, block)
    parsed = _parse_rows(name, features, skip_rows=start, max_rows=stop - start, keep=True)
    index_dtype = np.int32 if features < 2**31 else np.int64
    counts = np.concatenate(parsed.counts)
    indptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    if indptr[-1] < 2**31 and index_dtype is np.int32:
        indptr = indptr.astype(np.int32)
    A = sp.csr_matrix(
        (
            np.concatenate(parsed.values),
            np.concatenate(parsed.indices).astype(index_dtype),
            indptr,
        ),
        shape=(counts.size, features),
        copy=False,
    )
    A.has_sorted_indices = True
    return Block(index=int(block), A=A, y=np.concatenate(parsed.labels))
