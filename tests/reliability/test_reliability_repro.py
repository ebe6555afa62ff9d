"""Reproducibility and untrusted input.

- The same seed and data give bit-identical weights and predictions on CPU in
  two separate processes.
- A model directory records the package and dependency versions; a header of
  another bundle format version loads or fails with a clear one-line message.
- No source file can run code from user input: no pickle, no
  ``allow_pickle=True``, ``torch.load`` only with ``weights_only=True``, no
  eval/exec, no subprocess or shell.
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file

import histexpr
from conftest import make_planted
from histexpr.cli import main
from histexpr.data.hdf5 import write_h5
from histexpr.estimators.bundle import BUNDLE_FORMAT_VERSION

SRC = Path(histexpr.__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TRAIN = [
    *("--model", "convnet", "--seed", "2", "--set", "epochs=2", "--set", "batch_size=64"),
    *("--set", "channels=8,8,8,8,16,16,16,16", "--set", "threads=1"),
    *("--set", "progress=false", "--set", "seed=11"),
]


def cli(*args) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return exc.code, err.getvalue()
    return 0, err.getvalue()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "d.h5"
    write_h5(make_planted(n_genes=120, cells=("E003", "E004", "E005")), path)
    return path


def test_same_seed_gives_bit_identical_predictions_across_processes(data_file, tmp_path):
    script = (
        "import sys\nfrom histexpr.cli import main\n"
        "out = sys.argv[1]\n"
        f"main(['train', {str(data_file)!r}, '-o', out + '/m', *{TRAIN!r}])\n"
        f"main(['predict', out + '/m', {str(data_file)!r}, '-o', out + '/p.csv'])\n"
    )
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(r)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in runs
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a, b = (load_file(r / "m" / "weights.safetensors") for r in runs)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    pa, pb = ((r / "p.csv").read_bytes() for r in runs)
    assert pa == pb and pa.count(b"\n") == 361
    # and the same numbers from this process, loading either directory
    assert cli("predict", runs[0] / "m", data_file, "-o", tmp_path / "c.csv")[0] == 0
    assert (tmp_path / "c.csv").read_bytes() == pa


def test_model_directory_records_versions(data_file, tmp_path):
    assert cli("train", data_file, "--model", "ridge", "-o", tmp_path / "m")[0] == 0
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    assert header["format_version"] == BUNDLE_FORMAT_VERSION
    assert header["histexpr_version"] == histexpr.__version__
    versions = header["versions"]
    assert {"python", "numpy", "torch", "scikit-learn", "h5py", "pandas"} <= set(versions)
    assert versions["numpy"] == __import__("numpy").__version__
    assert versions["torch"] == torch.__version__
    # format 2: the input contract and a SHA-256 of every other file
    assert BUNDLE_FORMAT_VERSION == 2
    assert header["bin_size"] == 100 and header["target"] == "log2(RPKM+1)"
    assert header["cells"] == ["E003", "E004", "E005"] and header["n_genes"] > 0
    others = {p.name for p in (tmp_path / "m").iterdir()} - {"model.json"}
    assert set(header["checksums"]) == others and "genes.txt" in others


@pytest.fixture(scope="module")
def ridge_dir(data_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ridge") / "m"
    assert cli("train", data_file, "--model", "ridge", "-o", out)[0] == 0
    return out


def _with_header(ridge_dir: Path, tmp_path: Path, edit) -> Path:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(ridge_dir, model)
    header = json.loads((model / "model.json").read_text())
    edit(header)
    (model / "model.json").write_text(json.dumps(header))
    return model


def test_minimal_version_1_header_still_loads(ridge_dir, data_file, tmp_path):
    """A version-1 header without the fields added later (versions, created, extra; the
    version-2 contract and checksums) loads."""

    def strip(h):
        h["format_version"] = 1
        v2 = ("checksums", "genes", "n_genes", "bin_size", "target", "task", "cells")
        for key in ("versions", "created", "extra", "histexpr_version", *v2):
            h.pop(key, None)

    model = _with_header(ridge_dir, tmp_path, strip)
    assert cli("predict", model, data_file, "-o", tmp_path / "p.csv")[0] == 0
    assert (tmp_path / "p.csv").is_file()


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (BUNDLE_FORMAT_VERSION + 1, "newer histexpr"),
        (0, "never written by histexpr"),
        ("1", "no bundle format_version"),
        (None, "no bundle format_version"),
    ],
)
def test_other_format_versions_fail_with_one_clear_line(
    version, message, ridge_dir, data_file, tmp_path
):
    def set_version(h):
        if version is None:
            del h["format_version"]
        else:
            h["format_version"] = version

    model = _with_header(ridge_dir, tmp_path, set_version)
    code, err = cli("predict", model, data_file, "-o", tmp_path / "p.csv")
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.csv").exists()


def test_checkpoints_load_weights_only(tmp_path):
    """A checkpoint holding a pickled object is refused, never executed."""
    from histexpr.training.checkpoints import AtomicCheckpointIO, checkpoint_loads

    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "ok.ckpt")
    assert io_.load_checkpoint(tmp_path / "ok.ckpt")["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ok.ckpt"]
    torch.save({"payload": Path("/")}, tmp_path / "evil.ckpt")  # an arbitrary class
    assert not checkpoint_loads(tmp_path / "evil.ckpt")
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        io_.load_checkpoint(tmp_path / "evil.ckpt")


# ---------------------------------------------------------------- static checks

#: Modules whose import would let a file run code or start processes.
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
FORBIDDEN_MODULES |= {"marshal", "subprocess", "pty", "runpy"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execv"),
    ("os", "execvp"),
    ("os", "spawnv"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}
#: import_module calls allowed, each on a name from a table in the code, never from a file.
#: Paths relative to ``src/histexpr``.
IMPORT_MODULE_OK = {"estimators/__init__.py", "featurize/bigwig.py"}


def _name(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _constant_arg(node: ast.Call) -> bool:
    return bool(node.args) and isinstance(node.args[0], ast.Constant)


def find_problems(root: Path) -> list[str]:
    """Every use under ``root`` of something that could run code from a file."""
    files = sorted(root.rglob("*.py"))
    problems = []
    for path in files:
        rel = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for m in mods:
                    if m.split(".")[0] in FORBIDDEN_MODULES:
                        problems.append(f"{rel}:{node.lineno} imports {m}")
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            if name in FORBIDDEN_CALLS and not (name == "__import__" and _constant_arg(node)):
                problems.append(f"{rel}:{node.lineno} calls {name}()")
            if tuple(name.split(".")[-2:]) in FORBIDDEN_ATTRS:
                problems.append(f"{rel}:{node.lineno} calls {name}()")
            allow = kw.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                problems.append(f"{rel}:{node.lineno} {name}(allow_pickle=...) not False")
            if name == "torch.load":
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{rel}:{node.lineno} torch.load without weights_only=True")
            if (
                name.endswith("import_module")
                and rel.as_posix() not in IMPORT_MODULE_OK
                and not _constant_arg(node)
            ):
                problems.append(f"{rel}:{node.lineno} import_module outside the registries")
            # Every Lightning Trainer of the package, wherever it is built, checkpoints atomically.
            if name.split(".")[-1] == "Trainer" and "plugins" not in kw:
                problems.append(f"{rel}:{node.lineno} Trainer without the weights-only plugin")
    return problems


def test_no_source_file_can_run_code_from_input():
    assert len(list(SRC.rglob("*.py"))) > 20
    problems = find_problems(SRC)
    assert not problems, "\n".join(problems)
    # The checks above name files and calls: make sure they still find what they check.
    assert all((SRC / rel).is_file() for rel in IMPORT_MODULE_OK)
    trainers = [p for p in SRC.rglob("*.py") if "Trainer(" in p.read_text()]
    assert trainers, "no Trainer construction found: the plugin check checks nothing"


def test_static_check_catches_what_it_should(tmp_path):
    """The checker flags each forbidden pattern (so its pass on src/ means something)."""
    snippets = [
        "import pickle",
        "from joblib import load",
        "import numpy as np\nnp.load('f', allow_pickle=True)",
        "import torch\ntorch.load('f')",
        "import torch\ntorch.load('f', weights_only=False)",
        "eval(open('f').read())",
        "import os\nos.system('x')",
        "import subprocess",
        "import importlib\nimportlib.import_module(open('f').read())",
    ]
    for i, code in enumerate(snippets):
        (tmp_path / f"m{i}.py").write_text(code + "\n")
    (tmp_path / "ok.py").write_text(
        "import numpy as np\nimport torch\nnp.load('f', allow_pickle=False)\n"
        "torch.load('f', weights_only=True)\nt = __import__('types')\n"
    )
    flagged = {p.split(":")[0] for p in find_problems(tmp_path)}
    assert flagged == {f"m{i}.py" for i in range(len(snippets))}
