"""reglab.data: file formats, search and download, sources, preparation, batching and augmentation.

Every file-format test writes tiny format-exact files with numpy/struct and compares the loaded
tensors with the arrays written. No test touches the network; the user cache is redirected to tmp.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from reglab.config import AugmentConfig, ConfigError, DataConfig
from reglab.data import (
    DATASETS,
    CorruptDataError,
    DataNotFoundError,
    TensorData,
    apply_augmentation,
    augment_images,
    batch_indices,
    dataset_status,
    draw_augmentation,
    epoch_steps,
    load_dataset,
    register_dataset,
)
from reglab.data import download as download_module
from reglab.data import registry as registry_module
from reglab.data.download import Remote, fetch
from reglab.data.paths import cache_dir
from reglab.data.sources import mnist1d as mnist1d_module

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """User cache in tmp, no $REGLAB_DATA: only the folders a test creates (and /usr/share) are searched."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)


def load(name: str, **fields) -> TensorData:
    return load_dataset(DataConfig(name=name, **fields))


# ------------------------------------------------------------------------------------------- IDX
def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, *, gz: bool, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict:
    """The four MNIST files in `folder`; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        payload = idx_bytes(array, 2051 if array.ndim == 3 else 2049)
        (folder / (stem + ".gz" * gz)).write_bytes(gzip.compress(payload) if gz else payload)
    return arrays


def test_the_other_sets_official_files_in_data_dir_are_refused(tmp_path, monkeypatch):
    """MNIST and Fashion-MNIST share file names, and `data.data_dir` itself is searched for either: files
    that are Fashion-MNIST's official ones (by SHA-256) do not load as `mnist` there."""
    write_idx_set(tmp_path, gz=True)
    fashion = tuple(Remote(p.name, (), hashlib.sha256(p.read_bytes()).hexdigest()) for p in tmp_path.glob("*.gz"))
    monkeypatch.setitem(download_module.OFFICIAL, "fashion-mnist", fashion)  # these files play Fashion-MNIST's
    with pytest.raises(ConfigError, match=r"^data.data_dir: .* is fashion-mnist's official file, not mnist's"):
        load("mnist", data_dir=tmp_path)
    assert load("fashion-mnist", data_dir=tmp_path).x_train.shape == (6, 1, 28, 28)
    nested = tmp_path / "elsewhere"
    write_idx_set(nested / "mnist", gz=True)
    for p in (nested / "mnist").glob("*.gz"):
        p.write_bytes((tmp_path / p.name).read_bytes())  # the same files in data_dir/mnist: named, so trusted
    assert load("mnist", data_dir=nested).x_train.shape == (6, 1, 28, 28)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_exactly(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "mnist", gz=gz)  # found as data_dir/<name>
    data = load("mnist", data_dir=tmp_path, normalize=False)
    assert data.name == "mnist" and data.num_classes == 10 and data.task == "classification"
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    expected = torch.tensor(arrays["train-images-idx3-ubyte"][:, None] / 255.0, dtype=torch.float32)
    torch.testing.assert_close(data.x_train, expected, rtol=0, atol=1e-7)
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert data.input_shape == (1, 28, 28) and data.num_outputs == 10


def _wrong_magic(folder: Path) -> str:
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">I", 2051) + path.read_bytes()[4:])
    return path.name


def _truncated(folder: Path) -> str:
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    return path.name


def _too_long(folder: Path) -> str:
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes() + b"\0")
    return path.name


def _count_mismatch(folder: Path) -> str:
    path = folder / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3), 2049))  # 3 labels for 4 images
    return path.name


@pytest.mark.parametrize("corrupt", [_wrong_magic, _truncated, _too_long, _count_mismatch])
def test_corrupt_idx_raises_naming_the_file(tmp_path, corrupt):
    write_idx_set(tmp_path, gz=False)
    file_name = corrupt(tmp_path)
    with pytest.raises(CorruptDataError, match=rf"{file_name}.*; replace the file, or delete it and run "
                                               r"`reglab data fetch mnist`"):  # with what to do
        load("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("system", ["1", "0"])
def test_missing_data_lists_every_place_looked(tmp_path, monkeypatch, system):
    monkeypatch.setenv("REGLAB_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", system)
    with pytest.raises(DataNotFoundError) as err:
        load("mnist", data_dir=tmp_path / "empty")
    message = str(err.value)
    for place in (tmp_path / "empty", tmp_path / "empty" / "mnist", tmp_path / "shared" / "mnist",
                  cache_dir("mnist")):
        assert str(place) in message
    assert ("/usr/share/datasets/mnist" in message) == (system == "1")
    assert "reglab data fetch mnist" in message and "train-images-idx3-ubyte" in message
    assert "\n" not in message


def test_a_folder_missing_one_file_names_only_that_file(tmp_path):
    """A folder with three of the four IDX files: the error names the folder and the missing file,
    not the three that are there."""
    write_idx_set(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError) as err:
        load("mnist", data_dir=tmp_path)
    message = str(err.value)
    assert f"{tmp_path / 'mnist'} lacks t10k-labels-idx1-ubyte[.gz] (" in message
    assert "train-images" not in message and "reglab data fetch mnist" in message and "\n" not in message


# ----------------------------------------------------------------------------------------- CIFAR
def cifar_records(rng, n: int, label_bytes: int, classes: tuple[int, ...]) -> tuple[bytes, np.ndarray]:
    labels = np.stack([rng.integers(0, c, n) for c in classes], axis=1)
    images = rng.integers(0, 256, (n, 3, 32, 32))
    rows = np.concatenate([labels, images.reshape(n, -1)], axis=1).astype(np.uint8)
    assert rows.shape[1] == label_bytes + 3072
    return rows.tobytes(), np.concatenate([labels, images.reshape(n, -1)], axis=1)


def test_cifar10_binary_folder(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    written = []
    for i in range(1, 6):
        buf, rows = cifar_records(rng, 2, 1, (10,))
        (folder / f"data_batch_{i}.bin").write_bytes(buf)
        written.append(rows)
    buf, test_rows = cifar_records(rng, 3, 1, (10,))
    (folder / "test_batch.bin").write_bytes(buf)
    train_rows = np.concatenate(written)

    data = load("cifar10", data_dir=tmp_path, normalize=False)
    assert data.x_train.shape == (10, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert data.num_classes == 10
    assert data.y_train.tolist() == train_rows[:, 0].tolist()
    expected = torch.tensor(train_rows[:, 1:].reshape(10, 3, 32, 32) / 255.0, dtype=torch.float32)
    torch.testing.assert_close(data.x_train, expected, rtol=0, atol=1e-7)
    # channel-major: the first 1024 pixel bytes of a record are the red plane, row-major
    assert data.x_test[1, 0, 0, 1].item() * 255 == pytest.approx(test_rows[1, 1 + 1])
    assert data.x_test[1, 2, 31, 31].item() * 255 == pytest.approx(test_rows[1, 3072])

    bad = bytearray((folder / "data_batch_4.bin").read_bytes())
    bad[3073] = 10  # the second record's label
    (folder / "data_batch_4.bin").write_bytes(bytes(bad))
    with pytest.raises(CorruptDataError, match=r"data_batch_4\.bin: label 10 outside 0\.\.9"):
        load("cifar10", data_dir=tmp_path)
    (folder / "data_batch_3.bin").write_bytes(buf[:-5])
    with pytest.raises(CorruptDataError, match="data_batch_3.bin"):
        load("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("labels", ["fine", "coarse"])
def test_cifar100_from_tar_gz(tmp_path, labels):
    rng = np.random.default_rng(2)
    train_buf, train_rows = cifar_records(rng, 4, 2, (20, 100))
    test_buf, test_rows = cifar_records(rng, 2, 2, (20, 100))
    folder = tmp_path / "cifar100"
    folder.mkdir()
    with tarfile.open(folder / "cifar-100-binary.tar.gz", "w:gz") as tar:
        for name, buf in (("train.bin", train_buf), ("test.bin", test_buf)):
            info = tarfile.TarInfo(f"cifar-100-binary/{name}")
            info.size = len(buf)
            tar.addfile(info, io.BytesIO(buf))

    data = load("cifar100", data_dir=tmp_path, normalize=False, options={"labels": labels})
    column = 1 if labels == "fine" else 0
    assert data.num_classes == (100 if labels == "fine" else 20)
    assert data.y_train.tolist() == train_rows[:, column].tolist()
    assert data.y_test.tolist() == test_rows[:, column].tolist()
    expected = torch.tensor(test_rows[:, 2:].reshape(2, 3, 32, 32) / 255.0, dtype=torch.float32)
    torch.testing.assert_close(data.x_test, expected, rtol=0, atol=1e-7)
    assert not (folder / "cifar-100-binary").exists()  # read in memory, not extracted


def test_cifar100_bad_record_length(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes(3074 * 2))
    (folder / "test.bin").write_bytes(bytes(3073))  # a CIFAR-10-sized record
    with pytest.raises(CorruptDataError, match=r"test\.bin.*3074-byte"):
        load("cifar100", data_dir=tmp_path)


# -------------------------------------------------------------------------------------- download
def test_fetch_file_url_verifies_sha256(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(b"reglab" * 1000)
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = cache_dir("demo") / "payload.bin"

    assert fetch(source.as_uri(), dest, good) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert str(dest).startswith(str(tmp_path / "xdg-cache" / "reglab"))

    dest.unlink()
    with pytest.raises(CorruptDataError, match="SHA-256"):
        fetch(source.as_uri(), dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a partial download remains


def test_a_mirror_serving_other_bytes_is_passed_over_for_the_next(tmp_path, monkeypatch):
    good, stale = tmp_path / "good.bin", tmp_path / "stale.bin"
    good.write_bytes(b"the official file")
    stale.write_bytes(b"an outdated copy")
    remote = Remote("f.bin", (stale.as_uri(), good.as_uri()), hashlib.sha256(good.read_bytes()).hexdigest())
    monkeypatch.setitem(download_module.OFFICIAL, "demo", (remote,))
    download_module.download_official("demo", tmp_path / "dest")
    assert (tmp_path / "dest" / "f.bin").read_bytes() == good.read_bytes()
    monkeypatch.setitem(download_module.OFFICIAL, "demo", (Remote("g.bin", (stale.as_uri(),), remote.sha256),))
    with pytest.raises(OSError, match="stale.bin: SHA-256"):  # every mirror failed: each is named
        download_module.download_official("demo", tmp_path / "dest")


def test_a_response_cut_off_mid_stream_is_passed_over_for_the_next_mirror(tmp_path, monkeypatch):
    """A chunked response that ends early raises http.client.IncompleteRead, which is no OSError."""
    import http.client
    import io
    import urllib.request

    good = tmp_path / "good.bin"
    good.write_bytes(b"the official file")
    opener = urllib.request.urlopen

    class CutOff(io.BytesIO):
        def read(self, *args):
            raise http.client.IncompleteRead(b"")

    def urlopen(url, timeout=None):
        return CutOff() if url.startswith("http://cut.example") else opener(url, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    remote = Remote("f.bin", ("http://cut.example/f.bin", good.as_uri()), hashlib.sha256(good.read_bytes()).hexdigest())
    monkeypatch.setitem(download_module.OFFICIAL, "demo", (remote,))
    download_module.download_official("demo", tmp_path / "dest")
    assert (tmp_path / "dest" / "f.bin").read_bytes() == good.read_bytes()


def test_files_already_here_are_kept_only_with_their_hash_and_written_with_the_umasks_mode(tmp_path, monkeypatch):

    from reglab.data.fetch import fetch_dataset

    served = tmp_path / "server"
    write_idx_set(served, gz=True, n_train=3, n_test=2)
    remotes = tuple(Remote(f"{stem}.gz", ((served / f"{stem}.gz").as_uri(),),
                           hashlib.sha256((served / f"{stem}.gz").read_bytes()).hexdigest()) for stem in IDX_STEMS)
    monkeypatch.setitem(download_module.OFFICIAL, "mnist", remotes)
    dest = cache_dir("mnist")
    dest.mkdir(parents=True)
    (dest / f"{IDX_STEMS[0]}.gz").write_bytes(b"garbage")  # a damaged copy: replaced, not trusted
    assert fetch_dataset("mnist") == f"mnist: official files (SHA-256 checked) → {dest}"
    assert (dest / f"{IDX_STEMS[0]}.gz").read_bytes() == (served / f"{IDX_STEMS[0]}.gz").read_bytes()
    assert fetch_dataset("mnist") == f"mnist: already here, the official files (SHA-256 checked) → {dest}"
    umask = os.umask(0o022)
    os.umask(umask)
    assert {(p.stat().st_mode & 0o777) for p in dest.iterdir()} == {0o666 & ~umask}


def test_download_lands_in_cache_and_loads(tmp_path, monkeypatch):
    served = tmp_path / "server"
    arrays = write_idx_set(served, gz=True, n_train=3, n_test=2)
    remotes = tuple(Remote(f"{stem}.gz", (f"{served.as_uri()}/missing-mirror/{stem}.gz",
                                          (served / f"{stem}.gz").as_uri()),
                           hashlib.sha256((served / f"{stem}.gz").read_bytes()).hexdigest())
                    for stem in IDX_STEMS)
    monkeypatch.setitem(download_module.OFFICIAL, "mnist", remotes)

    with pytest.raises(DataNotFoundError):
        load("mnist")
    data = load("mnist", download=True, normalize=False)
    assert sorted(p.name for p in cache_dir("mnist").iterdir()) == sorted(f"{s}.gz" for s in IDX_STEMS)
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert load("mnist", normalize=False).y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


# ------------------------------------------------------------------------------- shipped sources
def test_mnist_5k_real_file():
    data = load("mnist-5k", normalize=False)
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1 and data.x_train.max() > 0.99
    assert torch.bincount(data.y_train, minlength=10).tolist() == [400] * 10
    assert torch.bincount(data.y_test, minlength=10).tolist() == [100] * 10
    assert data.y_train[:20].tolist() == list(range(10)) * 2  # interleaved: subsets stay balanced


def test_mnist1d_generated_cached_and_deterministic(monkeypatch):
    np_state = np.random.get_state()[1].copy()
    data = load("mnist1d", normalize=False)
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.num_classes == 10 and set(data.y_test.unique().tolist()) == set(range(10))
    assert (np.random.get_state()[1] == np_state).all()  # global NumPy generator untouched
    cached = list(cache_dir("mnist1d").glob("*.npz"))
    assert len(cached) == 1 and "n5000-seed42" in cached[0].name

    monkeypatch.setattr(mnist1d_module, "generate", lambda *a: pytest.fail("regenerated despite cache"))
    again = load("mnist1d", normalize=False)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)


def test_an_mnist1d_seed_numpy_cannot_take_is_refused_naming_the_option():
    from reglab.config import ConfigError

    with pytest.raises(ConfigError, match=r"data\.options\.seed: .*less than 4294967296"):
        load("mnist1d", options={"seed": 2**32})


def test_mnist1d_same_options_same_data(tmp_path):
    first, second = (mnist1d_module.generate(200, 7, False) for _ in range(2))
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert first["x_train"].shape == (160, 40)
    assert not np.array_equal(first["x_train"], mnist1d_module.generate(200, 8, False)["x_train"])


def test_a_system_data_folder_is_searched_unless_switched_off(tmp_path, monkeypatch):
    from reglab.data import paths

    monkeypatch.setattr(paths, "SYSTEM_DIR", tmp_path / "datasets")
    arrays = write_idx_set(tmp_path / "datasets" / "fashion-mnist", gz=False)
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", "1")
    status = {s.name: s for s in dataset_status()}["fashion-mnist"]
    assert status.available and status.location == str(tmp_path / "datasets" / "fashion-mnist")
    data = load("fashion-mnist", normalize=False)
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert torch.equal(data.x_test[:, 0] * 255, torch.tensor(arrays["t10k-images-idx3-ubyte"], dtype=torch.float32))
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", "0")
    assert not {s.name: s for s in dataset_status()}["fashion-mnist"].available


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(), reason="no system Fashion-MNIST (dataset-fashion-mnist)")
def test_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", "1")  # the suite runs without system folders (conftest)
    status = {s.name: s for s in dataset_status()}["fashion-mnist"]
    assert status.available and status.location == str(FASHION_SYSTEM_DIR)
    assert status.size.startswith("60000 train / 10000 test")
    data = load("fashion-mnist", normalize=False)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.y_train).tolist() == [6000] * 10
    assert torch.bincount(data.y_test).tolist() == [1000] * 10


# ----------------------------------------------------------------------------------- synthetic
def test_fn1d_targets_follow_their_formulas():
    data = load("fn1d")  # normalize=True by default, but fn1d keeps raw inputs
    x = torch.linspace(-10, 10, 20)
    torch.testing.assert_close(data.x_train[:, 0], x)
    torch.testing.assert_close(data.y_train[:, 0], torch.tanh(x - 6) + torch.tanh(x + 6))
    grid = data.x_test[:, 0]
    torch.testing.assert_close(data.y_test[:, 0], torch.tanh(grid - 6) + torch.tanh(grid + 6))
    assert data.task == "regression" and data.num_outputs == 1 and data.x_test.shape == (201, 1)

    hat = load("fn1d", options={"target": "relu-points"})
    assert hat.x_train[:, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert hat.y_train[:, 0].tolist() == [0.0, 0.0, 0.5, 0.0, 0.0]

    pts = load("fn1d", options={"points": [[0.0, 1.0], [2.0, -1.0]], "noise": 0.1, "seed": 3})
    assert pts.x_train[:, 0].tolist() == [0.0, 2.0]
    assert (pts.y_train[:, 0] - torch.tensor([1.0, -1.0])).abs().max() > 0  # noisy training targets
    torch.testing.assert_close(pts.y_test, data.y_test)  # clean test targets


def test_teacher_student_teacher_and_data_seeds():
    opts = {"d": 3, "n_train": 20, "n_test": 5}
    a = load("teacher-student", options={**opts, "teacher_seed": 1, "seed": 0})
    b = load("teacher-student", options={**opts, "teacher_seed": 1, "seed": 1})
    c = load("teacher-student", options={**opts, "teacher_seed": 2, "seed": 0})
    assert a.x_train.shape == (20, 3) and a.y_train.shape == (20, 1)
    assert not torch.equal(a.x_train, b.x_train) and torch.equal(a.x_train, c.x_train)

    def teacher_direction(data):  # m = 1: atanh(y) = ±w·x, linear in x, with ‖w‖ = 1
        x, y = data.x_train.double(), data.y_train.double()
        return torch.linalg.lstsq(x, torch.atanh(y)).solution[:, 0]

    v = teacher_direction(a)
    assert v.norm().item() == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(teacher_direction(b), v, atol=1e-4, rtol=0)  # same teacher, new data
    assert (teacher_direction(c) - v).abs().max() > 0.1  # another teacher
    predicted = torch.tanh(b.x_test.double() @ v)[:, None]
    torch.testing.assert_close(b.y_test.double(), predicted, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------- preparation
def test_subset_and_validation_split():
    base = {"name": "teacher-student", "options": {"d": 2, "n_train": 200, "n_test": 50}}
    raw = load_dataset(DataConfig(**base))
    data = load_dataset(DataConfig(**base, train_subset=100, test_subset=10, val_split=0.25, split_seed=5))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (75, 25, 10)
    torch.testing.assert_close(data.x_test, raw.x_test[:10])
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    assert rows(data.x_train).isdisjoint(rows(data.x_val))
    assert rows(data.x_train) | rows(data.x_val) == rows(raw.x_train[:100])

    same = load_dataset(DataConfig(**base, train_subset=100, val_split=0.25, split_seed=5))
    other = load_dataset(DataConfig(**base, train_subset=100, val_split=0.25, split_seed=6))
    assert torch.equal(same.x_val, data.x_val) and not torch.equal(other.x_val, data.x_val)

    with pytest.raises(ConfigError, match="data.train_subset"):
        load_dataset(DataConfig(**base, train_subset=201))


def test_normalisation_uses_final_training_split(tmp_path):
    write_idx_set(tmp_path, gz=False, n_train=40, n_test=10)
    cfg = {"name": "mnist", "data_dir": tmp_path, "val_split": 0.25}
    raw = load_dataset(DataConfig(**cfg, normalize=False))
    data = load_dataset(DataConfig(**cfg))
    assert data.x_train.mean().abs() < 1e-5 and data.x_train.std(correction=0) == pytest.approx(1, abs=1e-5)
    mean, std = raw.x_train.mean(), raw.x_train.std(correction=0)  # one channel
    torch.testing.assert_close(data.x_test, (raw.x_test - mean) / std)
    torch.testing.assert_close(data.x_val, (raw.x_val - mean) / std)


def test_vector_normalisation_is_per_feature():
    data = load("mnist1d", options={"num_samples": 200})
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_train.std(0, correction=0), torch.ones(40), atol=1e-5, rtol=0)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"data\.options\.bogus: .*accepted: target, n_train"):
        load("fn1d", options={"bogus": 1})
    with pytest.raises(ConfigError, match=r"data\.options\.target"):
        load("fn1d", options={"target": "cubic"})
    with pytest.raises(ConfigError, match=r"data\.options\.n_train"):
        load("teacher-student", options={"n_train": 0})
    with pytest.raises(ConfigError, match=r"data\.name: unknown data set 'nope'"):
        load("nope")
    with pytest.raises(ConfigError, match=r"data\.options\.points"):
        load("fn1d", options={"points": [[0, 0]], "n_train": 3})
    with pytest.raises(ConfigError, match=r"data\.augment"):
        load("fn1d", augment={"flip": True})


def test_registry_status_and_overwrite_warning(tmp_path, monkeypatch):
    assert {"mnist", "fashion-mnist", "mnist-5k", "mnist1d", "cifar10", "cifar100", "fn1d",
            "teacher-student"} <= set(DATASETS)
    write_idx_set(tmp_path, gz=True)
    monkeypatch.setattr(mnist1d_module, "generate", lambda *a: pytest.fail("status generated mnist1d"))
    status = {s.name: s for s in dataset_status(tmp_path)}
    assert status["mnist"].available and status["mnist"].location == str(tmp_path)
    assert status["mnist"].size.startswith("6 train / 4 test")
    assert not status["cifar10"].available and all(s.description for s in status.values())

    def loader(*, data_dir, download):
        return load_dataset(DataConfig(name="fn1d"))

    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    register_dataset("tmp-set", description="a test", probe=lambda d: None)(loader)
    with pytest.warns(UserWarning, match="registered again"):
        register_dataset("tmp-set", description="again", probe=lambda d: None)(loader)


# -------------------------------------------------------------------------------------- batching
def test_batch_indices_cover_each_index_once():
    g = torch.Generator().manual_seed(0)
    batches = list(batch_indices(11, 3, g))
    assert [len(b) for b in batches] == [3, 3, 3, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(11))
    assert [len(b) for b in batch_indices(10, 0, g)] == [10]
    assert [len(b) for b in batch_indices(10, 64, g)] == [10]
    left_out = [set(range(10)) - set(torch.cat(list(batch_indices(10, 3, g))).tolist()) for _ in range(200)]
    assert all(len(s) == 1 for s in left_out)  # no last batch of one sample (BatchNorm cannot take it) ...
    assert len(set().union(*left_out)) == 10  # ... and the one left out is another random sample each epoch
    assert [epoch_steps(n, b) for n, b in ((10, 3), (11, 3), (9, 3), (1, 1), (1, 5), (7, 0), (4, 3))] == [
        3, 4, 3, 1, 1, 1, 1]
    replay = [torch.cat(list(batch_indices(50, 8, torch.Generator().manual_seed(s)))) for s in (1, 1, 2)]
    assert torch.equal(replay[0], replay[1]) and not torch.equal(replay[0], replay[2])


def images(n=64, c=2, h=5, w=6) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


def test_augment_off_is_identity():
    x = images()
    assert augment_images(x, AugmentConfig(), torch.Generator()) is x


def test_flip_only_keeps_or_mirrors_each_sample():
    x = images()
    out = augment_images(x, AugmentConfig(flip=True), torch.Generator().manual_seed(0))
    kept = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert (kept | mirrored).all() and kept.any() and mirrored.any()


@pytest.mark.parametrize("flip", [False, True])
def test_crop_is_a_window_of_the_padded_image(flip):
    x, p = images(), 2
    cfg = AugmentConfig(crop_padding=p, flip=flip)
    out = augment_images(x, cfg, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h, w = x.shape[2:]
    offsets = set()
    for i in range(len(x)):  # brute force: which windows (and mirror images) equal the output?
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                for window in (padded[i, :, dy:dy + h, dx:dx + w],)
                if torch.equal(out[i], window) or (flip and torch.equal(out[i], window.flip(-1)))]
        assert hits, f"sample {i} is not a shifted copy of its padded image"
        offsets.update(hits)
    assert len(offsets) > 5  # offsets differ between samples
    again = augment_images(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(again, out)
    assert not torch.equal(augment_images(x, cfg, torch.Generator().manual_seed(4)), out)


def test_crop_offsets_and_flips_are_uniform():
    """Every offset (dy, dx) ∈ {0, …, 2p}² equally likely (chi-square over 5000 samples) and each sample
    mirrored with probability ½; read back exactly from images whose pixels number their positions."""
    from scipy import stats

    n, h, w, p = 5000, 8, 8, 2
    x = (1 + torch.arange(h * w, dtype=torch.float32)).reshape(1, 1, h, w).expand(n, 1, h, w)
    cfg = AugmentConfig(crop_padding=p, flip=True)
    out = apply_augmentation(x, cfg, draw_augmentation(n, cfg, torch.Generator().manual_seed(0)))
    a = h // 2  # pixels (a, a − 1) and (a, a) come from inside the image at every offset
    left, right = out[:, 0, a, a - 1].long() - 1, out[:, 0, a, a].long() - 1
    flipped = right < left  # a mirrored window runs its columns backwards
    source = torch.where(flipped, left, right)  # the source pixel of window position (a, a) unmirrored
    dy, dx = source // w - a + p, source % w - a + p
    counts = torch.bincount(dy * (2 * p + 1) + dx, minlength=(2 * p + 1) ** 2)
    assert len(counts) == (2 * p + 1) ** 2 and (counts > 0).all()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    assert abs(flipped.float().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batching_and_augmentation_stay_on_the_generator_device():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = images().cuda()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation raises
    try:
        batches = list(batch_indices(64, 16, g))
        out = augment_images(x[batches[0]], AugmentConfig(crop_padding=2, flip=True), g)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(b.device.type == "cuda" for b in batches) and out.device.type == "cuda"
    assert load_dataset(DataConfig(name="fn1d"), device="cuda").x_train.device.type == "cuda"


def test_tensor_data_contract():
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64)
    data = TensorData("t", x, y, x, y, num_classes=2).to("cpu")
    assert data.task == "classification" and data.input_shape == (3,) and data.num_outputs == 2
    with pytest.raises(ValueError, match="y_train must be int64"):
        TensorData("t", x, y.float(), x, y, num_classes=2)
    with pytest.raises(ValueError, match="equal lengths"):
        TensorData("t", x, y[:3], x, y, num_classes=2)
