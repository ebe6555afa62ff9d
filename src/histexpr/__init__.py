"""histexpr: predict gene expression from histone-modification signal around the TSS."""

from histexpr._runtime import histexpr_version, passive_openmp

passive_openmp()  # before torch or LightGBM load their OpenMP runtime

# ruff: noqa: E402
from histexpr.data.dataset import MARKS, N_BINS, HistoneDataset
from histexpr.errors import DataError, HistexprError

__version__ = histexpr_version()

__all__ = ["MARKS", "N_BINS", "DataError", "HistexprError", "HistoneDataset", "__version__"]
