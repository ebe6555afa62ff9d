"""Data layer: the dataset type, readers and writers per format, validation, splits."""

from histexpr.data.convert import ConvertResult, convert, detect_format, load_dataset
from histexpr.data.dataset import MARKS, N_BINS, HistoneDataset
from histexpr.data.deepchrome import read_deepchrome, write_deepchrome
from histexpr.data.hdf5 import H5Dataset, H5Writer, open_h5, read_h5, write_h5
from histexpr.data.npz import NpzWriter, iter_npz, read_npz, write_npz
from histexpr.data.splits import GeneSplit, cell_folds, holdout_cells, split_genes
from histexpr.data.submission import read_submission, write_submission
from histexpr.data.validate import validate_dataset

__all__ = [
    "MARKS",
    "N_BINS",
    "ConvertResult",
    "GeneSplit",
    "H5Dataset",
    "H5Writer",
    "HistoneDataset",
    "NpzWriter",
    "cell_folds",
    "convert",
    "detect_format",
    "holdout_cells",
    "iter_npz",
    "load_dataset",
    "open_h5",
    "read_deepchrome",
    "read_h5",
    "read_npz",
    "read_submission",
    "split_genes",
    "validate_dataset",
    "write_deepchrome",
    "write_h5",
    "write_npz",
    "write_submission",
]
