"""Problem data: the paper's synthetic generator, the LIBSVM reader and the blocks they yield."""

from faasopt.data.blocks import Block, block_bounds
from faasopt.data.libsvm import LibsvmInfo, read_libsvm_block, scan_libsvm
from faasopt.data.source import load_blocks, source_shape
from faasopt.data.synthetic import synthetic_block, synthetic_blocks

__all__ = [
    "Block",
    "LibsvmInfo",
    "block_bounds",
    "load_blocks",
    "read_libsvm_block",
    "scan_libsvm",
    "source_shape",
    "synthetic_block",
    "synthetic_blocks",
]
