"""Property-based corruption of every reader, driven through the command line.

Each example takes a small valid file (course npz, HDF5 dataset, DeepChrome CSV
folder, submission CSV or saved model directory), corrupts it in one drawn way
that makes it invalid (truncation, wrong dtype or shape, NaN/inf, negative or
huge counts, missing or duplicated keys, wrong column count, empty files,
non-UTF-8 bytes, a pickle inside an npz, ...), runs ``histexpr.cli.main`` and
checks the outcome every user should get: exit code 2, exactly one line on
stderr, no traceback, and no output file (nor a temporary one) left behind.

The number of cases run per reader is counted and checked by the last test.
"""

from __future__ import annotations

import collections
import io
import json
import shutil
import tempfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_planted
from deeptools_files import write_gz
from histexpr.cli import main
from histexpr.data.deepchrome import write_deepchrome
from histexpr.data.hdf5 import write_h5
from histexpr.data.npz import gene_to_int
from histexpr.data.submission import read_submission, write_submission
from histexpr.errors import DataError

CELLS = ("E003", "E004")
N_GENES = 4
#: Cases run per reader, checked (and printed) by ``test_case_counts``.
CASES: collections.Counter = collections.Counter()


def budget(n: int) -> settings:
    """Hypothesis settings: ``n`` examples, no deadline, reproducible in CI."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


#: Examples per reader: the whole file runs in about 20 s on 2 idle cores.
BUDGET = {
    "npz": 120,
    "h5": 100,
    "deepchrome": 120,
    "deeptools": 40,
    "model": 50,
    "submission": 60,
}


def cli(*args) -> tuple[int, str]:
    """Run the CLI in-process; return (exit code, stderr). Other exceptions propagate."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def assert_one_line_error(code: int, err: str, outputs: list[Path], case: str) -> None:
    """Exit code 2, one ``error:`` line, no traceback, no output or temporary file."""
    assert code == 2, f"{case}: exit code {code}, stderr {err!r}"
    assert "Traceback" not in err, f"{case}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {err!r}"
    for out in outputs:
        assert not out.exists(), f"{case}: {out} was written"
        leftovers = [p.name for p in out.parent.glob(f".{out.name}.*")]
        assert not leftovers, f"{case}: temporary files {leftovers} left behind"


def reader_data():
    return make_planted(n_genes=N_GENES, cells=CELLS, seed=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A ridge and a tiny convnet model directory trained on the planted data."""
    root = tmp_path_factory.mktemp("models")
    data = root / "train.h5"
    write_h5(make_planted(n_genes=60, cells=CELLS), data)
    out = {}
    for kind, extra in (
        ("ridge", []),
        ("convnet", ["--set", "epochs=1", "--set", "channels=4,4,4,4,4,4,4,4"]),
    ):
        extra = extra + (["--set", "progress=false", "--set", "threads=1"] if extra else [])
        code, err = cli("train", data, "--model", kind, "-o", root / kind, *extra)
        assert code == 0, err
        out[kind] = root / kind
    return out


# ---------------------------------------------------------------- course npz


def npz_arrays() -> dict[str, np.ndarray]:
    """Valid course arrays: key -> (genes, 100, 7) float32."""
    ds = reader_data()
    arrays = {}
    for c in CELLS:
        part = ds.select_cells([c])
        arr = np.zeros((len(part), 100, 7), np.float32)
        arr[:, :, 0] = gene_to_int(part.gene)[:, None]
        arr[:, :, 1:6] = part.X.transpose(0, 2, 1)
        arr[:, :, 6] = part.y[:, None]
        arrays[c] = arr
    return arrays


def _count_cell(draw, arrays):
    """A (key, gene, bin, mark column) position of a count."""
    key = draw(st.sampled_from(sorted(arrays)))
    g = draw(st.integers(0, N_GENES - 1))
    b = draw(st.integers(0, 99))
    col = draw(st.integers(1, 5))
    return key, g, b, col


def npz_corruption(draw, arrays: dict, path: Path) -> tuple[str, list[str]]:
    """Write a corrupted npz at ``path``; return (case name, extra CLI args)."""
    kind = draw(
        st.sampled_from(
            [
                "nonfinite",
                "negative",
                "huge",
                "gene-not-integer",
                "gene-varies",
                "gene-duplicated",
                "expression-varies",
                "expression-nan",
                "dtype",
                "pickle",
                "shape",
                "missing-key",
                "no-arrays",
                "duplicated-key",
                "truncated",
                "bad-member",
                "short-member",
                "not-a-zip",
            ]
        )
    )
    extra: list[str] = []
    if kind in ("nonfinite", "negative", "huge"):
        key, g, b, col = _count_cell(draw, arrays)
        if kind == "nonfinite":
            arrays[key][g, b, col] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        elif kind == "negative":
            arrays[key][g, b, col] = -draw(st.floats(1e-3, 1e6))
        else:
            arrays[key] = arrays[key].astype(np.float64)
            arrays[key][g, b, col] = draw(st.floats(1e39, 1e300))
    elif kind == "gene-not-integer":
        key = draw(st.sampled_from(CELLS))
        arrays[key][draw(st.integers(0, N_GENES - 1)), :, 0] += 0.5
    elif kind == "gene-varies":
        key, g, b, _ = _count_cell(draw, arrays)
        arrays[key][g, b, 0] += draw(st.integers(1, 1000))
    elif kind == "gene-duplicated":
        key = draw(st.sampled_from(CELLS))
        g1, g2 = draw(st.lists(st.integers(0, N_GENES - 1), min_size=2, max_size=2, unique=True))
        arrays[key][g2, :, 0] = arrays[key][g1, :, 0]
    elif kind == "expression-varies":
        key, g, b, _ = _count_cell(draw, arrays)
        arrays[key][g, b, 6] += draw(st.floats(0.5, 100))
    elif kind == "expression-nan":
        key = draw(st.sampled_from(CELLS))
        arrays[key][draw(st.integers(0, N_GENES - 1)), :, 6] = np.nan
    elif kind == "dtype":
        key = draw(st.sampled_from(CELLS))
        dtype = draw(st.sampled_from(["U8", "complex64", "bool", "datetime64[s]", "S4"]))
        arrays[key] = arrays[key].astype(dtype)
    elif kind == "pickle":
        key = draw(st.sampled_from(CELLS))
        arrays[key] = np.array([{"gene": 1}, "x"] * 3, dtype=object)
    elif kind == "shape":
        key = draw(st.sampled_from(CELLS))
        arr = arrays[key]
        wider = np.concatenate([arr, arr[:, :, :1]], 2)
        fewer_bins = arr[:, : draw(st.integers(1, 99))]
        shapes = [arr[:, :, 0], arr[None], arr[:, :, :5], wider, fewer_bins, arr.reshape(-1)]
        arrays[key] = draw(st.sampled_from(shapes))
    elif kind == "missing-key":
        extra = ["--cells", draw(st.sampled_from(["E999", "E003,E005", "e003"]))]
    if kind == "no-arrays":
        with zipfile.ZipFile(path, "w") as zf:
            if draw(st.booleans()):
                zf.writestr("readme.txt", "no arrays here")
    elif kind == "duplicated-key":
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arrays["E003"])
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("E003.npy", buf.getvalue())
            with pytest.warns(UserWarning, match="Duplicate name"):
                zf.writestr("E003.npy", buf.getvalue())
    elif kind in ("bad-member", "short-member"):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arrays["E003"])
        raw = buf.getvalue()
        if kind == "bad-member":
            raw = draw(st.binary(min_size=0, max_size=200))
        else:
            raw = raw[: draw(st.integers(130, len(raw) - 1))]
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("E003.npy", raw)
    elif kind == "not-a-zip":
        path.write_bytes(
            draw(
                st.sampled_from(
                    [
                        b"",
                        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",
                        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'",
                        b"PK\x03\x04" + bytes(30),
                    ]
                )
            )
            + draw(st.binary(max_size=50))
        )
    else:
        np.savez(path, **arrays)
        if kind == "truncated":
            raw = path.read_bytes()
            path.write_bytes(raw[: draw(st.integers(0, len(raw) - 1))])
    return kind, extra


@budget(BUDGET["npz"])
@given(data=st.data())
def test_npz_corruptions_fail_cleanly(data, models):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = d / "train.npz"
        case, extra = npz_corruption(data.draw, npz_arrays(), src)
        command = data.draw(st.sampled_from(["convert", "predict"]))
        if case.startswith("expression-"):
            command = "convert"  # predict ignores the expression column (tests/test_cli_data.py)
        out = d / ("out.h5" if command == "convert" else "pred.csv")
        if command == "convert":
            args = ["convert", src, out, "--no-progress", *extra]
        else:
            if extra:  # predict reads every key; missing keys only apply to convert
                args = ["convert", src, out, "--no-progress", *extra]
            else:
                args = ["predict", models["ridge"], src, "-o", out]
        code, err = cli(*args)
        assert_one_line_error(code, err, [out], f"npz {case}")
    CASES["npz"] += 1


# ---------------------------------------------------------------- HDF5 dataset


def h5_corruption(draw, path: Path) -> str:
    """Corrupt the valid HDF5 dataset at ``path`` in place; return the case name."""
    kind = draw(
        st.sampled_from(
            [
                "nonfinite",
                "negative",
                "huge",
                "missing-array",
                "dtype",
                "shape",
                "length",
                "target-nan",
                "cell-code",
                "gene-duplicated",
                "gene-empty",
                "attr",
                "truncated",
                "empty",
            ]
        )
    )
    if kind in ("truncated", "empty"):
        raw = path.read_bytes()
        path.write_bytes(b"" if kind == "empty" else raw[: draw(st.integers(1, len(raw) - 1))])
        return kind
    n = N_GENES * len(CELLS)
    with h5py.File(path, "r+") as f:
        if kind in ("nonfinite", "negative"):
            X = f["X"][:]
            bad = draw(st.sampled_from([np.nan, np.inf, -np.inf])) if kind == "nonfinite" else -1.0
            X[draw(st.integers(0, n - 1)), draw(st.integers(0, 4)), draw(st.integers(0, 99))] = bad
            f["X"][:] = X
        elif kind == "huge":
            X = f["X"][:].astype(np.float64)
            X[draw(st.integers(0, n - 1)), draw(st.integers(0, 4)), 0] = draw(
                st.floats(1e39, 1e300)
            )
            del f["X"]
            f["X"] = X
        elif kind == "missing-array":
            del f[draw(st.sampled_from(["X", "gene", "cell_code", "cell_names"]))]
        elif kind == "dtype":
            name = draw(st.sampled_from(["X", "cell_code", "y"]))
            shape = f[name].shape
            del f[name]
            f[name] = np.full(shape, b"ab", dtype="S2")
        elif kind == "shape":
            X = f["X"][:]
            del f["X"]
            f["X"] = draw(st.sampled_from([X[:, :4], X[:, :, :99], X[:, 0], X[None]]))
        elif kind == "length":
            name = draw(st.sampled_from(["gene", "y", "cell_code"]))
            values = f[name][:]
            del f[name]
            f[name] = values[: draw(st.integers(0, n - 1))]
        elif kind == "target-nan":
            f["y"][draw(st.integers(0, n - 1))] = np.nan
        elif kind == "cell-code":
            f["cell_code"][draw(st.integers(0, n - 1))] = draw(
                st.sampled_from([-1, -2, len(CELLS), 1000])
            )
        elif kind == "gene-duplicated":
            i, j = draw(st.lists(st.integers(0, N_GENES - 1), min_size=2, max_size=2, unique=True))
            f["gene"][j] = f["gene"][i]
        elif kind == "gene-empty":
            f["gene"][draw(st.integers(0, n - 1))] = ""
        elif kind == "attr":
            name, value = draw(
                st.sampled_from(
                    [
                        ("marks", "not json"),
                        ("marks", json.dumps(["a", "b", "c", "d", "e"])),
                        ("marks", json.dumps(5)),
                        ("marks", json.dumps(["H3K4me3"])),
                        ("n_bins", "abc"),
                        ("n_bins", 99),
                        ("meta", "{broken"),
                        ("meta", json.dumps([1, 2])),
                        ("format", "something-else"),
                        ("format_version", 99),
                        ("format_version", "one"),
                    ]
                )
            )
            f.attrs[name] = value
    return kind


@budget(BUDGET["h5"])
@given(data=st.data())
def test_h5_corruptions_fail_cleanly(data, models):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = d / "data.h5"
        write_h5(reader_data(), src, compression=None)
        case = h5_corruption(data.draw, src)
        command = data.draw(st.sampled_from(["convert", "predict", "evaluate", "info"]))
        model = models[data.draw(st.sampled_from(["ridge", "convnet"]))]
        outputs = {
            "convert": d / "copy.h5",
            "predict": d / "pred.csv",
            "evaluate": d / "eval.csv",
            "info": d / "none",
        }
        out = outputs[command]
        args = {
            "convert": ["convert", src, out, "--no-progress"],
            "predict": ["predict", model, src, "-o", out, "--memory", "20kB"],
            "evaluate": ["evaluate", model, src, "-o", out, "--memory", "20kB"],
            "info": ["info", src],
        }[command]
        code, err = cli(*args)
        assert_one_line_error(code, err, [out], f"h5 {case} ({command})")
    CASES["h5"] += 1


# ---------------------------------------------------------------- DeepChrome CSV


@pytest.fixture(scope="module")
def deepchrome_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("dc") / "dc"
    split = {
        g: s
        for g, s in zip(
            reader_data().gene[:N_GENES], ("train", "train", "valid", "test"), strict=True
        )
    }
    write_deepchrome(reader_data(), root, split)
    return root


def deepchrome_corruption(draw, root: Path) -> str:
    """Corrupt one file of the DeepChrome folder ``root`` in place; return the case name."""
    kind = draw(
        st.sampled_from(
            [
                "truncated",
                "non-utf8",
                "count",
                "label",
                "binid",
                "geneid",
                "columns",
                "ragged",
                "missing-file",
                "all-empty",
                "header",
            ]
        )
    )
    cell = draw(st.sampled_from(CELLS))
    split = draw(st.sampled_from(["train", "valid", "test"]))
    path = root / cell / f"{split}.csv"
    if kind == "missing-file":
        # Any subset of train/valid/test is a valid folder (issue 13); none at all is not.
        for f in root.glob("*/*.csv"):
            f.unlink()
        return kind
    if kind == "all-empty":
        for f in root.glob("*/*.csv"):
            f.write_bytes(b"")
        return kind
    raw = path.read_bytes()
    lines = raw.decode().splitlines()
    if kind == "truncated":
        # A cut right after a whole gene (100 complete lines) leaves a valid, shorter file.
        boundaries = {i for i, c in enumerate(raw) if c == ord("\n")}
        gene_ends = {sorted(boundaries)[k] for k in range(99, len(boundaries), 100)}
        cuts = [c for c in range(1, len(raw)) if c not in gene_ends and c - 1 not in gene_ends]
        path.write_bytes(raw[: draw(st.sampled_from(cuts))])
        return kind
    if kind == "non-utf8":
        pos = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x82"]))
        path.write_bytes(raw[:pos] + bad + raw[pos:])
        return kind
    if kind == "header":
        path.write_text("GeneID,BinID,a,b,c,d,e,label\n" + "\n".join(lines) + "\n")
        return kind
    i = draw(st.integers(0, len(lines) - 1))
    fields = lines[i].split(",")
    if kind == "count":
        fields[draw(st.integers(2, 6))] = draw(
            st.sampled_from(["nan", "inf", "-inf", "-1", "-0.5", "1e400", "1e300", "abc", ""])
        )
    elif kind == "label":
        fields[7] = draw(st.sampled_from(["2", "0.5", "-1", "nan", "yes"]))
    elif kind == "binid":
        fields[1] = str(int(fields[1]) + draw(st.sampled_from([-1000, 1, 7, 200])))
    elif kind == "geneid":
        fields[0] = draw(st.sampled_from(["ABC", "12x", "1.5", str(int(fields[0]) + 1), "-3"]))
    elif kind == "columns":
        drop = draw(st.booleans())
        lines = [",".join(ln.split(",")[:-1] if drop else [*ln.split(","), "0"]) for ln in lines]
    elif kind == "ragged":
        fields = fields[:-1] if draw(st.booleans()) else [*fields, "1"]
    if kind != "columns":
        lines[i] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return kind


@budget(BUDGET["deepchrome"])
@given(data=st.data())
def test_deepchrome_corruptions_fail_cleanly(data, models, deepchrome_template):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        root = d / "dc"
        shutil.copytree(deepchrome_template, root)
        case = deepchrome_corruption(data.draw, root)
        command = data.draw(st.sampled_from(["convert", "predict"]))
        out = d / ("out.h5" if command == "convert" else "pred.csv")
        args = (
            ["convert", root, out, "--no-progress"]
            if command == "convert"
            else ["predict", models["ridge"], root, "-o", out]
        )
        code, err = cli(*args)
        assert_one_line_error(code, err, [out], f"deepchrome {case} ({command})")
    CASES["deepchrome"] += 1


# ---------------------------------------------------------------- deepTools matrix


def deeptools_matrix(path: Path) -> Path:
    """The E003 block of the reader data as a computeMatrix -out file (5 marks x 100 bins)."""
    ds = reader_data().select_cells(["E003"])
    samples = {f"E003-{m}": ds.X[:, j].astype(float) for j, m in enumerate(ds.marks)}
    return write_gz(path, samples, genes=list(ds.gene), strands=["+", "-"] * (N_GENES // 2),
                    up=5000, down=5000)  # fmt: skip


def deeptools_corruption(draw, path: Path) -> str:
    """Corrupt a computeMatrix -out file in place; return the case name."""
    import gzip

    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = json.loads(lines[0][1:])
    kind = draw(st.sampled_from(["header", "param", "value", "ragged", "empty", "bytes", "labels"]))
    i = draw(st.integers(1, len(lines) - 1))
    fields = lines[i].split("\t")
    if kind == "header":
        lines[0] = lines[0][: draw(st.integers(2, len(lines[0]) - 1))]
    elif kind == "param":
        key, value = draw(
            st.sampled_from(
                [
                    ("body", [1000] * 5),
                    ("ref point", ["TES"] * 5),
                    ("bin size", [0] * 5),
                    ("bin size", [300] * 5),
                    ("upstream", "many"),
                    ("upstream", [5000] * 4),
                    ("sample_boundaries", [0, 100, 200]),
                    ("sample_labels", ["a", "b", "c", "d", "e"]),
                ]
            )
        )
        header[key] = value
        lines[0] = "@" + json.dumps(header, separators=(",", ":"))
        kind = f"param:{key}={value!r}"
    elif kind == "value":
        fields[draw(st.integers(6, len(fields) - 1))] = draw(
            st.sampled_from(["abc", "-1.000000", "inf", "", "1e400"])
        )
    elif kind == "ragged":
        fields = fields[:-1] if draw(st.booleans()) else [*fields, "1.000000"]
    elif kind == "empty":
        lines = lines[:1]
    elif kind == "labels":
        header["sample_labels"][1] = header["sample_labels"][0]  # a mark given twice
        lines[0] = "@" + json.dumps(header, separators=(",", ":"))
    if kind in ("value", "ragged"):
        lines[i] = "\t".join(fields)
    raw = gzip.compress(("\n".join(lines) + "\n").encode())
    if kind == "bytes":  # a gzip stream cut short
        raw = raw[: draw(st.integers(20, len(raw) - 1))]
    path.write_bytes(raw)
    return kind


@budget(BUDGET["deeptools"])
@given(data=st.data())
def test_deeptools_corruptions_fail_cleanly(data, models):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        matrix = deeptools_matrix(d / "m.gz")
        case = deeptools_corruption(data.draw, matrix)
        command = data.draw(st.sampled_from(["convert", "predict"]))
        out = d / ("out.h5" if command == "convert" else "pred.h5ad")
        args = (
            ["convert", matrix, out, "--no-progress"]
            if command == "convert"
            else ["predict", models["ridge"], matrix, "-o", out]
        )
        code, err = cli(*args)
        assert_one_line_error(code, err, [out], f"deeptools {case} ({command})")
    CASES["deeptools"] += 1


def test_valid_deeptools_matrix_predicts(models, tmp_path):
    """The uncorrupted matrix of the corruption cases predicts (so they test the reader)."""
    matrix = deeptools_matrix(tmp_path / "m.gz")
    code, err = cli("predict", models["ridge"], matrix, "-o", tmp_path / "p.csv")
    assert code == 0, err


# ---------------------------------------------------------------- saved model directory


def model_corruption(draw, model: Path) -> str:
    """Corrupt a copy of a saved model directory in place; return the case name."""
    files = sorted(p.name for p in model.iterdir() if p.is_file())
    kind = draw(st.sampled_from(["header-field", "header-bytes", "weights", "missing"]))
    header = model / "model.json"
    if kind == "header-field":
        data = json.loads(header.read_text())
        key, value = draw(
            st.sampled_from(
                [
                    ("format_version", 99),
                    ("format_version", "1"),
                    ("format_version", None),
                    ("kind", "no-such-model"),
                    ("kind", None),
                    ("marks", 5),
                    ("marks", ["a", "b"]),
                    ("marks", [1, 2, 3, 4, 5]),
                    ("n_bins", "many"),
                    ("n_bins", 99),
                    ("config", []),
                    ("config", {"unknown_field": 1}),
                    ("extra", "x"),
                ]
            )
        )
        if value is None:
            del data[key]
        else:
            data[key] = value
        header.write_text(json.dumps(data))
        return f"{kind}:{key}={value!r}"
    if kind == "header-bytes":
        raw = header.read_bytes()
        header.write_bytes(
            draw(st.sampled_from([raw[: draw(st.integers(0, len(raw) - 1))], b"\xff\xfe", b"[]"]))
        )
        return kind
    weights = [f for f in files if f.startswith(("weights", "state", "model.txt"))]
    target = model / draw(st.sampled_from(weights))
    if kind == "missing":
        target.unlink()
        return f"{kind}:{target.name}"
    raw = target.read_bytes()
    target.write_bytes(
        draw(
            st.sampled_from(
                [raw[: draw(st.integers(0, len(raw) - 1))], b"", draw(st.binary(max_size=64))]
            )
        )
    )
    return f"{kind}:{target.name}"


@pytest.fixture(scope="module")
def predict_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "eval.h5"
    write_h5(reader_data(), path)
    return path


@budget(BUDGET["model"])
@given(data=st.data())
def test_model_directory_corruptions_fail_cleanly(data, models, predict_input):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model = d / "model"
        shutil.copytree(models[data.draw(st.sampled_from(["ridge", "convnet"]))], model)
        case = model_corruption(data.draw, model)
        command = data.draw(st.sampled_from(["predict", "evaluate"]))
        out = d / "out.csv"
        code, err = cli(command, model, predict_input, "-o", out)
        assert_one_line_error(code, err, [out], f"model {case} ({command})")
    CASES["model"] += 1


# ---------------------------------------------------------------- submission CSV


def submission_corruption(draw, path: Path) -> str:
    lines = path.read_text().splitlines()
    kind = draw(
        st.sampled_from(
            [
                "non-utf8",
                "prediction",
                "duplicated-id",
                "header",
                "empty",
                "id",
                "columns",
                "missing-expected",
            ]
        )
    )
    i = draw(st.integers(1, len(lines) - 1))
    if kind == "non-utf8":
        raw = path.read_bytes()
        pos = draw(st.integers(0, len(raw)))
        path.write_bytes(raw[:pos] + b"\xff\xfe" + raw[pos:])
        return kind
    if kind == "empty":
        path.write_bytes(draw(st.sampled_from([b"", b"\n", b"id,expression\n"])))
        return kind
    if kind == "prediction":
        cid = lines[i].split(",")[0]
        lines[i] = f"{cid},{draw(st.sampled_from(['nan', 'inf', '-inf', 'abc', '']))}"
    elif kind == "duplicated-id":
        lines.append(lines[i])
    elif kind == "header":
        lines[0] = draw(st.sampled_from(["id,value", "expression,id", "id", "a,b,c"]))
    elif kind == "id":
        lines[i] = draw(st.sampled_from(["E003-1", "", "nounderscore"])) + ",1.0"
    elif kind == "columns":
        lines[i] = lines[i] + ",3"
    elif kind == "missing-expected":
        del lines[i]
    path.write_text("\n".join(lines) + "\n")
    return kind


@budget(BUDGET["submission"])
@given(data=st.data())
def test_submission_corruptions_raise_one_line_data_error(data):
    ds = reader_data()
    ids = [f"{c}_{g}" for c, g in zip(ds.cell, ds.gene, strict=True)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sub.csv"
        write_submission(ds.y, ds.cell, ds.gene, path)
        case = submission_corruption(data.draw, path)
        with pytest.raises(DataError) as info:
            read_submission(path, expected_ids=ids)
        assert "\n" not in str(info.value), case
        assert str(path) in str(info.value), case
    CASES["submission"] += 1


def test_error_line_names_file_and_key(tmp_path):
    """Keys in brackets survive the console (rich once swallowed "[cell_code]" as markup)."""
    arrays = npz_arrays()
    arrays["E004"][1, 7, 2] = -1.0
    np.savez(tmp_path / "t.npz", **arrays)
    code, err = cli("convert", tmp_path / "t.npz", tmp_path / "o.h5", "--no-progress")
    assert code == 2
    assert f"{tmp_path / 't.npz'} [E004]: negative count at gene 1, mark 1, bin 7" in err
    write_h5(reader_data(), tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5", "r+") as f:
        f["cell_code"][3] = 7
    code, err = cli("info", tmp_path / "d.h5")
    assert code == 2 and "[cell_code]: row 3: cell code 7 outside 0..1" in err


def test_case_counts(capsys):
    """Every reader ran its share of corruptions (run this file whole to see counts)."""
    if not CASES:
        pytest.skip("run together with the corruption tests")
    with capsys.disabled():
        print(f"\ncorruption cases run per reader: {dict(sorted(CASES.items()))}")
    for reader, n in BUDGET.items():
        # hypothesis may stop a little early when it runs out of distinct examples
        assert CASES[reader] >= 0.9 * n, (reader, CASES[reader])
