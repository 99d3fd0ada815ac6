"""Problem data: the paper's synthetic generator, the LIBSVM reader (local, ``s3://`` and
``http(s)://`` files, read by byte range) and the blocks they yield."""

from faasopt.data.blocks import Block, block_bounds
from faasopt.data.libsvm import LibsvmIndex, LibsvmInfo, read_libsvm_block, scan_libsvm
from faasopt.data.source import load_blocks, source_shape
from faasopt.data.synthetic import synthetic_block, synthetic_blocks

__all__ = [
    "Block",
    "LibsvmIndex",
    "LibsvmInfo",
    "block_bounds",
    "load_blocks",
    "read_libsvm_block",
    "scan_libsvm",
    "source_shape",
    "synthetic_block",
    "synthetic_blocks",
]
