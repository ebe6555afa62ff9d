"""Data layer: the dataset type, readers and writers per format, validation, splits."""

from histexpr.data.dataset import MARKS, N_BINS, HistoneDataset
from histexpr.data.hdf5 import H5Dataset, H5Writer, open_h5, read_h5, write_h5

__all__ = [
    "MARKS",
    "N_BINS",
    "H5Dataset",
    "H5Writer",
    "HistoneDataset",
    "open_h5",
    "read_h5",
    "write_h5",
]
