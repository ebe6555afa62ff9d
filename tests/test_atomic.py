import pytest

from histexpr.atomic import atomic_dir, atomic_path


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "model"
    mine = lambda p: True  # noqa: E731 - ownership is tested below
    with atomic_dir(target, ours=mine) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target, ours=mine) as tmp:
        (tmp / "a").write_text("2")
        raise KeyboardInterrupt
    assert (target / "a").read_text() == "1"
    with atomic_dir(target, ours=mine) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_outputs_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0)
    os.umask(mask)
    with atomic_path(tmp_path / "f") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~mask
    with atomic_dir(tmp_path / "d"):
        pass
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


def test_atomic_file_writer_base(tmp_path):
    from histexpr.atomic import AtomicFileWriter

    class LineWriter(AtomicFileWriter):
        def __init__(self, path):
            self._fh = open(self._begin(path, suffix=".txt"), "w")

        def write(self, text):
            self._fh.write(text)

        def _finalize(self):
            self._fh.write("END\n")

        def _close_handle(self):
            self._fh.close()

    with LineWriter(tmp_path / "ok.txt") as w:
        w.write("a\n")
    assert (tmp_path / "ok.txt").read_text() == "a\nEND\n"
    with pytest.raises(ValueError), LineWriter(tmp_path / "bad.txt") as w:
        w.write("half")
        raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.txt"]


# --------------------------------------------------------------------------- stale temporaries


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_dead_writer_are_removed_on_the_next_write(tmp_path):
    import os
    import time

    from histexpr.atomic.temps import _host_tag, stale_temporaries

    target = tmp_path / "out.h5"
    dead = tmp_path / f".out.h5.{_dead_pid()}-{_host_tag()}.abcd1234.h5.tmp"
    alive = tmp_path / f".out.h5.{os.getppid()}-{_host_tag()}.abcd1234.h5.tmp"
    old_legacy = tmp_path / ".out.h5.k3j4h5g6.h5.tmp"
    new_legacy = tmp_path / ".out.h5.zzzzzzzz.h5.tmp"
    other_output = tmp_path / f".other.h5.{_dead_pid()}-{_host_tag()}.abcd1234.h5.tmp"
    users = [tmp_path / ".out.h5.notes.tmp", tmp_path / "out.h5.tmp", tmp_path / ".out.h5.tmp"]
    for p in [dead, alive, old_legacy, new_legacy, other_output, *users]:
        p.write_bytes(b"x" * 10)
    day_ago = time.time() - 24 * 3600
    os.utime(old_legacy, (day_ago, day_ago))
    assert sorted(stale_temporaries(target)) == sorted([dead, old_legacy])
    with atomic_path(target, suffix=".h5") as tmp:
        tmp.write_text("new")
    left = {p.name for p in tmp_path.iterdir()}
    assert dead.name not in left and old_legacy.name not in left
    assert {alive.name, new_legacy.name, other_output.name, *(u.name for u in users)} <= left
    assert target.read_text() == "new"


def test_temporary_names_carry_pid_and_host(tmp_path):
    import os

    from histexpr.atomic.temps import _host_tag

    with atomic_path(tmp_path / "f.csv", suffix=".csv") as tmp:
        assert tmp.name.startswith(f".f.csv.{os.getpid()}-{_host_tag()}.")
        assert tmp.name.endswith(".csv.tmp")
    with atomic_dir(tmp_path / "d") as tmp:
        assert tmp.name.startswith(f".d.{os.getpid()}-{_host_tag()}.")


# --------------------------------------------------------------------------- atomic_dir safety


def test_atomic_dir_never_replaces_a_foreign_folder(tmp_path):
    from histexpr.errors import HistexprError

    target = tmp_path / "data"
    target.mkdir()
    (target / "train.h5").write_text("precious")
    with pytest.raises(HistexprError, match="did not write"), atomic_dir(target) as tmp:
        (tmp / "model.json").write_text("{}")
    assert (target / "train.h5").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(HistexprError), atomic_dir(afile):
        pass
    assert afile.read_text() == "x"


def test_atomic_dir_replaces_its_own_kinds(tmp_path):
    import json

    model = tmp_path / "m"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"format_version": 1}))
    training = tmp_path / "t"
    (training / "checkpoints" / "model").mkdir(parents=True)
    (training / "history.csv").write_text("member,epoch\n")
    for target in (model, training):
        with atomic_dir(target) as tmp:
            (tmp / "new").write_text("1")
        assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "t"]


# --------------------------------------------------------------------------- guard_output


@pytest.fixture
def files(tmp_path):
    import json

    import h5py

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"format_version": 1, "kind": "ridge"}))
    ours_h5 = tmp_path / "ours.h5"
    with h5py.File(ours_h5, "w") as f:
        f.attrs["format"] = "histexpr-dataset"
    foreign_h5 = tmp_path / "foreign.h5"
    with h5py.File(foreign_h5, "w") as f:
        f.attrs["format"] = "something else"
    bigwig = tmp_path / "track.bw"
    bigwig.write_bytes(b"\x26\xfc\x8f\x88" + b"\0" * 60)
    sub = tmp_path / "sub.csv"
    sub.write_text("id,expression\nE003_1,0.5\n")
    rpkm = tmp_path / "rpkm.csv"
    rpkm.write_text("gene_id,E003\nENSG1,2.0\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    return tmp_path


def test_guard_refuses_inputs_and_foreign_outputs(files, monkeypatch):
    from histexpr.atomic import guard_output
    from histexpr.errors import HistexprError

    monkeypatch.chdir(files)
    refused = [
        ("ours.h5", "dataset-file", ["ours.h5"]),  # an input, even ours
        (".", "model-dir", []),
        ("..", "run-dir", []),
        ("", "table-file", []),
        ("user", "model-dir", []),  # a folder of someone else's
        (str(files), "model-dir", ["ours.h5"]),  # holds the input
        ("ours.h5", "model-dir", []),  # a file where a folder is expected
        ("model", "table-file", []),  # a folder where a file is expected
        ("track.bw", "dataset-file", []),  # a bigWig is never replaced by HDF5
        ("foreign.h5", "dataset-file", []),
        ("rpkm.csv", "table-file", []),  # not a CSV histexpr writes
        ("missing/out.csv", "table-file", []),
        ("ours.h5/x.csv", "table-file", []),
    ]
    for path, kind, inputs in refused:
        for force in (False, True):
            with pytest.raises(HistexprError) as info:
                guard_output(path, kind, inputs, force=force)
            assert "\n" not in str(info.value) and len(str(info.value)) < 300
    # inputs are compared after resolving: ./ours.h5 and a symlink are the same file
    (files / "link.h5").symlink_to(files / "ours.h5")
    with pytest.raises(HistexprError, match="input"):
        guard_output("link.h5", "dataset-file", ["./ours.h5"], force=True)


def test_guard_replaces_only_our_own_kind_with_force(files, monkeypatch):
    from histexpr.atomic import guard_output
    from histexpr.errors import HistexprError

    monkeypatch.chdir(files)
    for path, kind in [
        ("model", "model-dir"),
        ("ours.h5", "dataset-file"),
        ("sub.csv", "table-file"),
    ]:
        with pytest.raises(HistexprError, match="--force"):
            guard_output(path, kind)
        assert guard_output(path, kind, force=True) == __import__("pathlib").Path(path)
    # new names and empty folders are always fine; directory outputs may create parents
    (files / "empty").mkdir()
    for path, kind in [("new.h5", "dataset-file"), ("empty", "model-dir"), ("a/b/m", "model-dir")]:
        guard_output(path, kind)


def test_a_swallowed_ctrl_c_discards_a_streamed_file(tmp_path):
    """Some libraries eat KeyboardInterrupt; the writer still never completes the file."""
    import os
    import signal
    import time

    from histexpr.atomic import AtomicFileWriter

    class Writer(AtomicFileWriter):
        def __init__(self, path):
            self._fh = open(self._begin(path), "w")

        def _close_handle(self):
            self._fh.close()

    w = Writer(tmp_path / "out.txt")
    w._fh.write("half")
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass  # swallowed, as a library might
    with pytest.raises(KeyboardInterrupt):
        w.close()
    assert list(tmp_path.iterdir()) == []
    with Writer(tmp_path / "out.txt") as w2:  # the next write is unaffected
        w2._fh.write("whole")
    assert (tmp_path / "out.txt").read_text() == "whole"
