"""The data source a worker's payload carries: a plain, JSON-able dict naming one kind of data.

``{"synthetic": {"samples": N, "features": d, "density": p, "seed": s}}`` (seed 001, Section III) or
``{"libsvm": {"uri": ..., "rows": N, "features": d, "size": ..., "etag": ..., "sha256": ...,
"offsets": [...], "lines": [...]}}`` (a `LibsvmIndex`: the planner's `scan_libsvm` of the file, for
B blocks). A worker rebuilds its blocks from it alone, so any worker can take any block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from faasopt.data.blocks import Block
from faasopt.data.libsvm import LibsvmIndex, read_libsvm_block
from faasopt.data.synthetic import synthetic_blocks
from faasopt.errors import DataError

_FIELDS: dict[str, tuple[str, ...]] = {
    "synthetic": ("samples", "features", "density", "seed"),
    "libsvm": tuple(f.name for f in fields(LibsvmIndex)),
}


def _unpack(source: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The source's kind and its parameters, checked for the kind's exact field names."""
    if not isinstance(source, Mapping) or len(source) != 1:
        raise DataError(
            f"expected a data source with exactly one of {sorted(_FIELDS)}, got {source!r}"
        )
    ((kind, params),) = source.items()
    if kind not in _FIELDS:
        raise DataError(f"expected a data source kind in {sorted(_FIELDS)}, got {kind!r}")
    if not isinstance(params, Mapping) or set(params) != set(_FIELDS[kind]):
        got = sorted(params) if isinstance(params, Mapping) else repr(params)
        raise DataError(f"expected {kind} fields {sorted(_FIELDS[kind])}, got {got}")
    return kind, dict(params)


def source_shape(source: Mapping[str, Any]) -> tuple[int, int]:
    """``(rows, features)`` of the whole data set the source describes, without loading it."""
    kind, params = _unpack(source)
    rows = params["samples"] if kind == "synthetic" else params["rows"]
    return int(rows), int(params["features"])


def load_blocks(source: Mapping[str, Any], block_ids: Sequence[int], blocks: int) -> list[Block]:
    """Load (generate or read) the blocks ``block_ids`` of ``blocks``, in that order.

    Raises
    ------
    DataError
        For an unknown source kind, missing or extra fields, or data that cannot be loaded.
    """
    kind, params = _unpack(source)
    if kind == "synthetic":
        return synthetic_blocks(
            params["samples"],
            params["features"],
            params["density"],
            params["seed"],
            block_ids,
            blocks,
        )
    index = LibsvmIndex.from_wire(params)
    if index.blocks != blocks:
        raise DataError(f"the data source is indexed for {index.blocks} blocks, not {blocks}")
    return [read_libsvm_block(index, b) for b in block_ids]
