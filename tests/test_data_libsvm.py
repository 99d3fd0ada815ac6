"""The LIBSVM reader: values against scikit-learn, blocks, one located error per malformation,
and a worker's read of a local file: only its block's bytes, of the version the planner indexed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_svmlight_file

import faasopt.data.libsvm as libsvm_module
from faasopt.data import (
    LibsvmIndex,
    block_bounds,
    load_blocks,
    read_libsvm_block,
    scan_libsvm,
    source_shape,
)
from faasopt.errors import DataError


def write(tmp_path: Path, text: str, name: str = "data.svm") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def read_all(
    path: Path, blocks: int, features: int | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    index = scan_libsvm(path, features).index(blocks)
    parts = [read_libsvm_block(index, b) for b in range(blocks)]
    assert [p.index for p in parts] == list(range(blocks))
    return sp.vstack([p.A for p in parts]).tocsr(), np.concatenate([p.y for p in parts])


def whole_file_index(path: Path, rows: int, features: int) -> LibsvmIndex:
    """An index of the whole file as one block, made by hand (scan_libsvm refuses bad files)."""
    size, mtime = path.stat().st_size, str(path.stat().st_mtime_ns)
    return LibsvmIndex(str(path), rows, features, size, mtime, "", (0, size), (1,))


@pytest.fixture
def random_file(tmp_path: Path) -> tuple[Path, sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(5)
    A = sp.random(257, 40, density=0.15, format="csr", random_state=rng)
    A.data = rng.standard_normal(A.nnz) * 10.0 ** rng.integers(-8, 8, A.nnz)
    keep = np.ones(257)
    keep[3] = 0.0  # a row without features
    A = (sp.diags(keep) @ A).tocsr()
    A.eliminate_zeros()
    assert A[3].nnz == 0
    y = np.where(rng.random(257) < 0.5, 1.0, -1.0)
    path = tmp_path / "random.svm"
    dump_svmlight_file(A, y, str(path), zero_based=False)
    return path, A, y


def test_round_trip_matches_scikit_learn(
    random_file: tuple[Path, sp.csr_matrix, np.ndarray],
) -> None:
    path, A, y = random_file
    info = scan_libsvm(path)
    assert (info.uri, info.rows, info.features) == (str(path), 257, A.indices.max() + 1)
    assert info.size == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    X, labels = load_svmlight_file(str(path), zero_based=False, n_features=info.features)
    ours, ours_y = read_all(path, blocks=1)
    assert ours.shape == X.shape and ours.dtype == np.float64
    ours.check_format(full_check=True)
    np.testing.assert_array_equal(ours.indptr, X.indptr)
    np.testing.assert_array_equal(ours.indices, X.indices)
    np.testing.assert_array_equal(ours.data, X.data)  # the same decimal text, parsed exactly
    np.testing.assert_array_equal(ours_y, labels)
    np.testing.assert_array_equal(ours_y, y)
    np.testing.assert_allclose(ours.toarray(), A.toarray()[:, : info.features], rtol=1e-15)


@pytest.mark.parametrize("blocks", [1, 2, 3, 7, 16, 257])
def test_blocks_concatenate_to_the_whole(
    random_file: tuple[Path, sp.csr_matrix, np.ndarray], blocks: int
) -> None:
    path, _, _ = random_file
    whole, whole_y = read_all(path, blocks=1)
    info = scan_libsvm(path)
    index = info.index(blocks)
    bounds = block_bounds(info.rows, blocks)
    for b in range(blocks):
        block = read_libsvm_block(index, b)
        assert block.A.shape == (bounds[b + 1] - bounds[b], info.features)
        assert (whole[bounds[b] : bounds[b + 1]] != block.A).nnz == 0
        np.testing.assert_array_equal(block.y, whole_y[bounds[b] : bounds[b + 1]])


TEXT = """\
# a header comment
+1 1:0.5 3:-2   # trailing comment
\t
0 2:1e-3
  # indented comment
-1
1.0 1:1 2:2 3:3 4:4\r
-1.0 4:7.25
"""


def test_comments_blank_lines_labels_and_chunking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, TEXT)
    expected = np.array(
        [[0.5, 0, -2, 0], [0, 1e-3, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 7.25]]
    )
    expected_y = [1.0, -1.0, -1.0, 1.0, -1.0]
    for chunk in (8192, 2, 1):  # rows are validated in chunks; the chunk size must not matter
        monkeypatch.setattr(libsvm_module, "_CHUNK_ROWS", chunk)
        info = scan_libsvm(path)
        assert (info.rows, info.features) == (5, 4)
        firsts = (b"+1 1", b"0 2", b"-1\n", b"1.0 ", b"-1.0")
        starts = tuple(TEXT.encode().index(first) for first in firsts)  # each row's first byte
        assert info.index(5).offsets == (*starts, len(TEXT))
        assert info.index(5).lines == (2, 4, 6, 7, 8)
        for blocks in (1, 2, 5):
            A, y = read_all(path, blocks)
            np.testing.assert_array_equal(A.toarray(), expected)
            np.testing.assert_array_equal(y, expected_y)


def test_inferred_and_given_features(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    assert scan_libsvm(path).features == 4
    assert scan_libsvm(path, features=4).features == 4
    info = scan_libsvm(str(path), features=9)
    assert (info.uri, info.rows, info.features) == (str(path), 5, 9)
    block = read_libsvm_block(info.index(2), 1)
    assert block.A.shape == (2, 9)
    with pytest.raises(DataError) as err:
        scan_libsvm(path, features=3)
    assert err.value.line == 7
    assert f"{path}:7: expected feature indices at most 3, got 4" == str(err.value)


MALFORMED = [
    # (file text, 1-based line of the error, part of the message)
    ("1 1:1\n\n2 1:1\n", 3, "expected a label +1, 1, -1 or 0, got '2'"),
    ("1 1:1\nyes 1:1\n", 2, "got 'yes'"),
    ("1 1:1\n-1 2:1 abc\n", 2, "expected 'index:value' with a positive integer index, got 'abc'"),
    ("1 1:1\n-1 x:1\n", 2, "got 'x:1'"),
    ("1 1:1\n-1 -3:1\n", 2, "got '-3:1'"),
    ("1 1:1\n-1 1:2:3\n", 2, "got '1:2:3'"),
    ("1 1:1\n-1 1:\n", 2, "got '1:'"),
    ("# c\n1 0:1.5\n", 2, "expected a positive (1-based) feature index, got 0"),
    ("1 1:1\n1 2:1 5:1 5:2\n", 2, "strictly increasing within a line, got 5 after 5"),
    ("1 1:1\n\n1 2:1 7:1 3:2\n", 3, "got 3 after 7"),
    ("1 1:1\n1 2:abc\n", 2, "expected a numeric value in '2:abc', got 'abc'"),
    ("1 1:1\n1 2:nan\n", 2, "expected a finite value, got nan at index 2"),
    ("1 1:1\n1 2:-inf\n", 2, "expected a finite value"),
    ("1 1:1\n1 2:1\n1 11:1\n", 3, "expected feature indices at most 10, got 11"),
    # the first problem in file order wins, whatever its kind
    ("1 1:1\n1 0:1\n1 x\n", 2, "got 0"),
    ("1 1:1\n1 x\n1 0:1\n", 2, "got 'x'"),
]


@pytest.mark.parametrize("chunk", [8192, 1])
@pytest.mark.parametrize(("text", "line", "message"), MALFORMED)
def test_malformed_lines_raise_located_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, message: str, chunk: int
) -> None:
    monkeypatch.setattr(libsvm_module, "_CHUNK_ROWS", chunk)
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        scan_libsvm(path, features=10)
    assert err.value.line == line
    assert err.value.path == str(path)
    assert f"{path}:{line}: " in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    # reading the whole file as one block finds the same error
    rows = sum(1 for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#"))
    with pytest.raises(DataError) as err2:
        read_libsvm_block(whole_file_index(path, rows, 10), 0)
    assert (err2.value.line, str(err2.value)) == (line, str(err.value))


def test_error_line_after_many_rows(tmp_path: Path) -> None:
    text = "".join(f"{(-1) ** i} {1 + i % 5}:{i}\n" for i in range(20_000)) + "1 3:1 2:1\n"
    path = write(tmp_path, "# header\n" + text)
    with pytest.raises(DataError) as err:
        scan_libsvm(path)
    assert err.value.line == 20_002
    assert f"{path}:20002: " in str(err.value)


def test_a_block_parses_only_its_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "1 1:1\n-1 bad\n1 2:2\n-1 3:3\n")
    # block 0 of 2 is rows 0-1 (the bad line, bytes 0-12); block 1 is rows 2-3 (bytes 13-26)
    # and never parses line 2
    size, mtime = path.stat().st_size, str(path.stat().st_mtime_ns)
    index = LibsvmIndex(str(path), 4, 3, size, mtime, "", (0, 13, size), (1, 3))
    block = read_libsvm_block(index, 1)
    np.testing.assert_array_equal(block.A.toarray(), [[0, 2, 0], [0, 0, 3]])
    np.testing.assert_array_equal(block.y, [1.0, -1.0])
    assert block.fetched_bytes == 1 + size - 13  # its bytes and the line end before them
    with pytest.raises(DataError) as err:
        read_libsvm_block(index, 0)
    assert err.value.line == 2
    # and an index beyond `features` in a block is caught there too
    with pytest.raises(DataError) as err:
        read_libsvm_block(LibsvmIndex(**{**index.to_wire(), "features": 2}), 1)
    assert err.value.line == 4


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n  # comments\n\n"])
def test_file_without_rows(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        scan_libsvm(path)
    assert err.value.line is None
    assert str(err.value) == f"{path}: expected at least one data row, found none"


def test_file_without_features_needs_features(tmp_path: Path) -> None:
    path = write(tmp_path, "1\n-1\n")
    with pytest.raises(DataError, match="to infer features"):
        scan_libsvm(path)
    info = scan_libsvm(path, features=3)
    assert info.rows == 2
    assert read_libsvm_block(info.index(1), 0).A.nnz == 0


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.svm"
    with pytest.raises(DataError) as err:
        scan_libsvm(missing)
    assert str(err.value) == f"{missing}: file not found"
    with pytest.raises(DataError, match="cannot read"):
        scan_libsvm(tmp_path)  # a directory
    path = write(tmp_path, "1 1:1\n-1 2:1\n1 3:1\n")
    index = scan_libsvm(path).index(2)
    path.unlink()
    with pytest.raises(DataError) as err:
        read_libsvm_block(index, 1)
    assert str(err.value) == f"{path}: file not found"


def test_each_block_reads_only_its_bytes(
    random_file: tuple[Path, sp.csr_matrix, np.ndarray],
) -> None:
    path, _, _ = random_file
    index = scan_libsvm(path).index(4)
    assert index.offsets[0] == 0 and index.offsets[-1] == path.stat().st_size
    for b in range(4):
        share = index.offsets[b + 1] - index.offsets[b]
        assert read_libsvm_block(index, b).fetched_bytes == share + (b > 0)


@pytest.mark.parametrize(
    "change",
    [
        lambda text: text.replace(b"1:", b"2:", 1),  # same size, another mtime
        lambda text: text + b"1 1:1\n",  # appended
        lambda text: b"1 1:1\n" + text,  # rows shifted
    ],
    ids=["rewritten", "appended", "shifted"],
)
def test_a_changed_file_is_detected(tmp_path: Path, change) -> None:
    path = write(tmp_path, "".join(f"{(-1) ** i} 1:{i} 2:1\n" for i in range(10)))
    index = scan_libsvm(path).index(2)
    scanned = path.stat().st_mtime_ns
    path.write_bytes(change(path.read_bytes()))
    later = scanned + 60 * 10**9  # a minute later (mtime ticks are milliseconds coarse)
    os.utime(path, ns=(later, later))
    with pytest.raises(DataError) as err:
        read_libsvm_block(index, 1)
    assert "changed since it was indexed" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda text: b"#" + text[1:], "expected 5 whole data rows in bytes 0-"),
        (lambda text: b"1 1:1\n" + text[:-6], "does not start a line"),
    ],
    ids=["row-commented", "rows-shifted"],
)
def test_a_change_the_version_tag_misses_is_caught_by_the_rows(
    tmp_path: Path, change, message: str
) -> None:
    """As from a server that gives no ETag: same size, same tag, other rows."""
    path = write(tmp_path, "".join(f"{(-1) ** i} 1:{i} 2:1\n" for i in range(10)))
    index = scan_libsvm(path).index(2)
    path.write_bytes(change(path.read_bytes()))
    index = LibsvmIndex(**{**index.to_wire(), "etag": str(path.stat().st_mtime_ns)})
    with pytest.raises(DataError, match=message):
        read_libsvm_block(index, 0 if "0-" in message else 1)


def test_sha256_is_checked_when_given(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    assert scan_libsvm(path, sha256=digest.upper()).sha256 == digest
    with pytest.raises(DataError) as err:
        scan_libsvm(path, sha256="0" * 64)
    assert str(err.value) == f"{path}: expected SHA-256 {'0' * 64}, the file has {digest}"


def test_libsvm_source(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    source = json.loads(json.dumps({"libsvm": scan_libsvm(path).index(3).to_wire()}))
    assert source_shape(source) == (5, 4)
    blocks = load_blocks(source, [2, 0], 3)
    assert [b.index for b in blocks] == [2, 0]
    np.testing.assert_array_equal(blocks[0].A.toarray(), [[0, 0, 0, 7.25]])
    np.testing.assert_array_equal(blocks[1].y, [1.0, -1.0])
    with pytest.raises(DataError, match="indexed for 3 blocks, not 2"):
        load_blocks(source, [0], 2)


@pytest.mark.parametrize(
    "source",
    [
        {"csv": {"path": "x"}},
        {},
        {"synthetic": {"samples": 10, "features": 5, "density": 0.1, "seed": 1}, "libsvm": {}},
        {"libsvm": {"path": "x", "rows": 3}},
        {"synthetic": {"samples": 10, "features": 5, "density": 0.1, "seed": 1, "extra": 0}},
        {"synthetic": [10, 5]},
        "synthetic",
    ],
)
def test_bad_sources_raise_data_error(source: object) -> None:
    with pytest.raises(DataError):
        source_shape(source)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        load_blocks(source, [0], 1)  # type: ignore[arg-type]
