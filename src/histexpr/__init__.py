"""histexpr: predict gene expression from histone-modification signal around the TSS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("histexpr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from histexpr.data.dataset import MARKS, N_BINS, HistoneDataset
from histexpr.errors import DataError, HistexprError

__all__ = ["MARKS", "N_BINS", "DataError", "HistexprError", "HistoneDataset", "__version__"]
