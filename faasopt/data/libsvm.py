"""LIBSVM / svmlight text files: index once (`scan_libsvm`), then read one block per worker.

A data line is ``label index:value index:value ...`` with 1-based, strictly increasing indices;
blank lines and lines starting with ``#`` are skipped and do not count as rows, and a trailing
``# comment`` on a data line is ignored. Labels equal to 1 (``+1``, ``1``, ``1.0``) mean +1; labels
equal to -1 or 0 mean -1; any other label is an error. Values must be finite.

The file is a local path, ``s3://bucket/key`` or ``http(s)://...`` (`faasopt.data.ranges`). The
planner reads it once, whole: `scan_libsvm` validates every line, checks a given SHA-256 and notes
where each row starts. `LibsvmInfo.index` turns that into a `LibsvmIndex` for B blocks, the byte
range and first line of every block and the version (size, ETag) of the file, small enough to
travel in a worker's payload. `read_libsvm_block` then reads only its block's byte range, refuses
another version of the file, and checks the range still starts and ends at line ends and holds
the block's rows. Both use one parser (`_parse_rows`), which works on bytes, validates every line
it parses and reports the first problem in file order as a `DataError` located at ``uri:line``.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

from faasopt.data.blocks import Block, _count, block_bounds, block_range
from faasopt.data.ranges import Version, display, open_range
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


@dataclass(frozen=True)
class LibsvmIndex:
    """Where the rows of each of B blocks lie in a LIBSVM file, and which version of it says so.

    The wire form of a LIBSVM data source (`faasopt.data.source`): plain ints and strings.
    """

    uri: str
    rows: int
    features: int
    size: int
    """Bytes of the file when it was scanned."""
    etag: str | None
    """Its version tag then (see `faasopt.data.ranges.Version`)."""
    sha256: str
    """Of the whole file, as scanned."""
    offsets: tuple[int, ...]
    """B + 1 byte offsets: block b is bytes ``[offsets[b], offsets[b + 1])``, starting at its
    first row; lines between blocks belong to the block before."""
    lines: tuple[int, ...]
    """B 1-based line numbers: of each block's first row, to locate errors."""

    def __post_init__(self) -> None:
        offsets = self.offsets
        if len(offsets) < 2 or len(self.lines) != len(offsets) - 1:
            raise DataError(
                f"expected B + 1 offsets and B line numbers, got {len(offsets)} and "
                f"{len(self.lines)}",
                path=display(self.uri),
            )
        if any(a >= b for a, b in itertools.pairwise(offsets)) or offsets[-1] != self.size:
            raise DataError(
                f"expected increasing block offsets ending at the size {self.size}",
                path=display(self.uri),
            )

    @property
    def blocks(self) -> int:
        return len(self.offsets) - 1

    @property
    def version(self) -> Version:
        return Version(self.size, self.etag)

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, params: dict[str, Any]) -> LibsvmIndex:
        """From the JSON form (lists for tuples)."""
        offsets, lines = tuple(params["offsets"]), tuple(params["lines"])
        return cls(**{**params, "offsets": offsets, "lines": lines})


@dataclass(frozen=True)
class LibsvmInfo:
    """What `scan_libsvm` learnt of a valid file: rows, features, version, where rows start."""

    uri: str
    rows: int
    features: int
    size: int
    etag: str | None
    sha256: str
    row_starts: np.ndarray = field(repr=False, compare=False)
    """Byte offset of every data row (int64, 8 bytes per row while the planner holds it)."""
    row_lines: np.ndarray = field(repr=False, compare=False)
    """1-based line number of every data row."""

    def index(self, blocks: int) -> LibsvmIndex:
        """The byte ranges of ``blocks`` blocks (`block_bounds` rows each)."""
        firsts = block_bounds(self.rows, blocks)[:-1]
        return LibsvmIndex(
            uri=self.uri,
            rows=self.rows,
            features=self.features,
            size=self.size,
            etag=self.etag,
            sha256=self.sha256,
            offsets=(*(int(o) for o in self.row_starts[firsts]), self.size),
            lines=tuple(int(n) for n in self.row_lines[firsts]),
        )


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
    starts: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class _Parsed:
    """Checked rows: concatenable pieces of labels, 0-based indices, values and row lengths,
    or (for an index) of the rows' byte offsets and line numbers."""

    rows: int = 0
    max_index: int = 0
    size: int = 0
    """Bytes parsed."""
    ends_a_line: bool = True
    """Whether the bytes parsed end with a line end (or are none)."""
    labels: list[np.ndarray] = field(default_factory=list)
    indices: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)
    starts: list[np.ndarray] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)


def _check_chunk(
    chunk: _Chunk, features: int | None, path: str, keep: bool, out: _Parsed, index: bool = False
) -> None:
    """Validate the indices and values of ``chunk`` (vectorized) and append it to ``out``: its
    data if ``keep``, where its rows are if ``index``, else only counts.

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
    if index:
        out.starts.append(np.array(chunk.starts, dtype=np.int64))
        out.lines.append(np.array(chunk.lines, dtype=np.int64))


def _parse_rows(
    handle: BinaryIO,
    path: str,
    features: int | None,
    keep: bool = False,
    index: bool = False,
    first_line: int = 1,
) -> _Parsed:
    """Parse and validate every data row of ``handle``, whose first line is ``first_line``.

    Rows are checked in chunks, and a syntax error first checks the rows before it, so the error
    reported is the first in the file. ``keep`` keeps the rows' data, ``index`` each row's byte
    offset (from the handle's start) and line; with neither, only counts (a scan of a file larger
    than memory).
    """
    out = _Parsed()
    chunk = _Chunk()
    lineno = first_line - 1
    position = 0
    raw = b""
    labels, lines, starts, counts = chunk.labels, chunk.lines, chunk.starts, chunk.counts
    indices, values = chunk.indices, chunk.values

    def fail(message: str) -> DataError:
        _check_chunk(chunk, features, path, False, _Parsed())  # earlier problems first
        return DataError(message, path=path, line=lineno)

    for raw in handle:
        lineno += 1
        start = position
        position += len(raw)
        line = raw[: raw.index(b"#")] if b"#" in raw else raw
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
            tokens = text.replace(b":", b" ").split()
            try:
                row_values = list(map(float, tokens[1::2]))
            except ValueError:
                raise fail(_diagnose(text)) from None
            indices.extend(map(int, tokens[0::2]))
            values.extend(row_values)
            counts.append(len(row_values))
        else:
            counts.append(0)
        labels.append(label)
        lines.append(lineno)
        starts.append(start)
        if len(labels) >= _CHUNK_ROWS:
            _check_chunk(chunk, features, path, keep, out, index)
            chunk = _Chunk()
            labels, lines, starts, counts = chunk.labels, chunk.lines, chunk.starts, chunk.counts
            indices, values = chunk.indices, chunk.values
    _check_chunk(chunk, features, path, keep, out, index)
    out.size = position
    out.ends_a_line = not raw or raw.endswith(b"\n")
    return out


def _features(features: int | None) -> int | None:
    if features is None:
        return None
    features = _count(features, "feature count")
    if features < 1:
        raise DataError(f"expected at least 1 feature, got {features}")
    return features


def scan_libsvm(
    uri: str | os.PathLike[str], features: int | None = None, sha256: str | None = None
) -> LibsvmInfo:
    """Validate every data line of a LIBSVM file, count its rows and features, note where each
    row starts and the file's version.

    Reads the whole file once without keeping its data, so a planner can check a file and index
    its blocks before any worker reads one.

    Parameters
    ----------
    uri
        A local path, ``s3://bucket/key`` or ``http(s)://...``.
    features
        The feature count; every index must be at most this. None infers it as the largest index.
    sha256
        The file's expected SHA-256 (hex), or None not to check it.

    Raises
    ------
    DataError
        At ``uri:line`` for the first malformed line; without a line for a missing, unreachable or
        unreadable file, a checksum mismatch, a file without data rows, or (``features=None``) a
        file without any feature index.
    """
    name = os.fspath(uri)
    features = _features(features)
    with open_range(name) as handle:
        parsed = _parse_rows(handle, display(name), features, index=True)
        reader = handle.raw
    if sha256 is not None and reader.sha256.hexdigest() != sha256.lower():
        raise DataError(
            f"expected SHA-256 {sha256.lower()}, the file has {reader.sha256.hexdigest()}",
            path=display(name),
        )
    if parsed.rows == 0:
        raise DataError("expected at least one data row, found none", path=display(name))
    if features is None:
        if parsed.max_index == 0:
            raise DataError(
                "expected at least one 'index:value' to infer features, found none",
                path=display(name),
            )
        features = parsed.max_index
    return LibsvmInfo(
        uri=name,
        rows=parsed.rows,
        features=features,
        size=parsed.size,
        etag=reader.version.etag,
        sha256=reader.sha256.hexdigest(),
        row_starts=np.concatenate(parsed.starts),
        row_lines=np.concatenate(parsed.lines),
    )


def read_libsvm_block(index: LibsvmIndex, block: int) -> Block:
    """Read block ``block`` of a LIBSVM file indexed by `scan_libsvm`: only its byte range.

    Reads one byte more, the line end before the range, and checks that the range still starts
    and ends at line ends and holds the block's rows: with the version check of the read, a file
    changed since it was indexed is an error, not other rows.

    Raises
    ------
    DataError
        At ``uri:line`` for a malformed line of the block; when the file is missing, unreachable,
        of another version than indexed, or its range is truncated or not the block's rows.
    """
    first, stop_row = block_range(index.rows, index.blocks, block)
    start, stop = index.offsets[block], index.offsets[block + 1]
    name = display(index.uri)
    changed = "the file changed since it was indexed; plan the job again"
    with open_range(index.uri, max(start - 1, 0), stop, index.version) as handle:
        if start and handle.read(1) != b"\n":
            raise DataError(f"byte {start} does not start a line: {changed}", path=name)
        parsed = _parse_rows(handle, name, index.features, keep=True, first_line=index.lines[block])
        fetched = handle.raw.fetched
    if parsed.rows != stop_row - first or (stop < index.size and not parsed.ends_a_line):
        raise DataError(
            f"expected {stop_row - first} whole data rows in bytes {start}-{stop}, found "
            f"{parsed.rows}: {changed}",
            path=name,
        )
    index_dtype = np.int32 if index.features < 2**31 else np.int64
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
        shape=(counts.size, index.features),
        copy=False,
    )
    A.has_sorted_indices = True
    return Block(index=int(block), A=A, y=np.concatenate(parsed.labels), fetched_bytes=fetched)
