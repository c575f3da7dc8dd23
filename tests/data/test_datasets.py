"""load_classification_data over every kind of source: built-ins, IDX folders, class folders, CSV lists."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ninshiki.data.datasets import load_classification_data
from ninshiki.data.formats.idx import write_idx
from ninshiki.data.images import ImageReadError, UnreadableImageWarning
from ninshiki.data.splits import ConvertedSplit, FileSplit, InMemorySplit

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")


def _write_idx_set(folder: Path, n_train: int = 30, n_test: int = 10, test: bool = True) -> None:
    rng = np.random.default_rng(0)
    write_idx(rng.integers(0, 256, (n_train, 6, 5), dtype=np.uint8), folder / "train-images-idx3-ubyte.gz")
    write_idx((np.arange(n_train) % 3).astype(np.uint8), folder / "train-labels-idx1-ubyte.gz")
    if test:
        write_idx(rng.integers(0, 256, (n_test, 6, 5), dtype=np.uint8), folder / "t10k-images-idx3-ubyte")
        write_idx((np.arange(n_test) % 3).astype(np.uint8), folder / "t10k-labels-idx1-ubyte")


def test_digits() -> None:
    data = load_classification_data("digits")
    assert data.classes == [str(i) for i in range(10)] and data.channels == 1 and data.image_size == (8, 8)
    assert len(data.train) + len(data.val) == 1797 and abs(len(data.val) - 180) <= 5
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 8, 8)
    assert int(data.train.images.max()) == 255 and not data.val_is_test
    again = load_classification_data("digits")
    assert torch.equal(again.val.images, data.val.images)
    bigger = load_classification_data("digits", image_size=16, channels=3, val_split=0.0)
    assert bigger.train.images.shape == (1797, 3, 16, 16) and bigger.val is None


@needs_fashion
def test_fashion_mnist_is_the_official_split() -> None:
    data = load_classification_data("fashion-mnist")
    assert data.train.images.shape == (60000, 1, 28, 28) and data.val.images.shape == (10000, 1, 28, 28)
    assert data.val_is_test and data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert torch.bincount(data.val.labels).tolist() == [1000] * 10


@needs_fashion
def test_fashion_mnist_too_big_to_resize_up_front_is_resized_on_access() -> None:
    data = load_classification_data("fashion_mnist", image_size=64, channels=3, memory_limit_mb=100)
    assert isinstance(data.train, ConvertedSplit)        # 70k x 3 x 64 x 64 = 860 MB > 100 MB
    assert data.train.base.images.shape == (60000, 1, 28, 28)
    assert data.train[0][0].shape == (3, 64, 64) and data.image_size == (64, 64) and data.channels == 3


def test_missing_idx_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*--data-root DIR"):
        load_classification_data("fashion-mnist", data_root=str(tmp_path))


def test_mnist_from_data_root_and_idx_folders(tmp_path: Path) -> None:
    _write_idx_set(tmp_path / "mnist")
    data = load_classification_data("mnist", data_root=str(tmp_path))  # the subfolder named "mnist" is found
    assert data.classes == [str(i) for i in range(10)] and data.val_is_test
    assert (len(data.train), len(data.val), data.image_size) == (30, 10, (6, 5))
    _write_idx_set(tmp_path / "plain", test=False)
    plain = load_classification_data(str(tmp_path / "plain"), val_split=0.2)
    assert plain.classes == ["0", "1", "2"] and (len(plain.train), len(plain.val)) == (24, 6)
    assert not plain.val_is_test


def test_class_folder_auto_split(class_folder) -> None:
    root = class_folder(per_class={"cat": 10, "dog": 10, "fox": 5})
    data = load_classification_data(str(root), val_split=0.2, image_size=(12, 10))
    assert data.classes == ["cat", "dog", "fox"] and data.channels == 3 and data.image_size == (12, 10)
    assert isinstance(data.train, InMemorySplit) and data.train.images.shape == (20, 3, 12, 10)
    assert torch.bincount(data.val.labels).tolist() == [2, 2, 1]
    assert all(Path(p).is_relative_to(root) for p in data.val.paths)
    assert load_classification_data(str(root), channels=1).train.images.shape[1:] == (1, 224, 224)


@pytest.mark.parametrize("val_name, is_test", [("val", False), ("test", True)])
def test_class_folder_with_train_and_val(class_folder, val_name: str, is_test: bool) -> None:
    train = class_folder("split/train", per_class={"cat": 4, "dog": 4})
    class_folder(f"split/{val_name}", per_class={"dog": 2})
    data = load_classification_data(str(train.parent), image_size=8)
    assert data.classes == ["cat", "dog"] and len(data.train) == 8 and data.val_is_test is is_test
    assert data.val.labels.tolist() == [1, 1]  # "dog" is class 1 of the training classes


def test_val_class_unknown_to_train_is_an_error(class_folder) -> None:
    train = class_folder("s/train", per_class={"cat": 2})
    class_folder("s/val", per_class={"emu": 2})
    with pytest.raises(ValueError, match=r"val: class\(es\) emu are not among the training classes \(cat\)"):
        load_classification_data(str(train.parent), image_size=8)


def test_unreadable_files_are_skipped_with_a_warning_or_raise_when_strict(class_folder, bad_files) -> None:
    root = class_folder(per_class={"cat": 3, "dog": 3})
    shutil.copy(bad_files["truncated_png"], root / "cat" / "broken.png")
    (root / "dog" / "empty.jpg").touch()
    with pytest.warns(UnreadableImageWarning) as caught:
        data = load_classification_data(str(root), val_split=0.0, image_size=8)
    assert len(data.train) == 6 and len(data.skipped) == 2
    assert sorted(str(w.message) for w in caught) == [
        f"skipping unreadable image {root / 'cat' / 'broken.png'}: truncated image file",
        f"skipping unreadable image {root / 'dog' / 'empty.jpg'}: empty file (0 bytes)"]
    with pytest.raises(ImageReadError, match="broken.png: truncated image file"):
        load_classification_data(str(root), val_split=0.0, image_size=8, strict=True)


def test_large_folders_stay_on_disk(class_folder) -> None:
    data = load_classification_data(str(class_folder()), image_size=8, memory_limit_mb=0)
    assert isinstance(data.train, FileSplit) and isinstance(data.val, FileSplit)
    assert data.train[0][0].shape == (3, 8, 8)


def test_csv_list_and_separate_val_data(tmp_path: Path, class_folder) -> None:
    root = class_folder(per_class={"cat": 4, "dog": 4})
    lines = [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    data = load_classification_data(str(tmp_path / "list.csv"), val_split=0.25, image_size=8)
    assert data.classes == ["cat", "dog"] and (len(data.train), len(data.val)) == (6, 2)
    (tmp_path / "val.csv").write_text(f"{lines[0]}\n{lines[-1]}\n")
    with_val = load_classification_data(str(root), val_data=str(tmp_path / "val.csv"), image_size=8)
    assert len(with_val.train) == 8 and with_val.val.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"folder: class\(es\) cat, dog are not among the training classes"):
        load_classification_data("digits", val_data=str(root))

def test_unknown_sources_and_wrong_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown data source 'cifar10'.*digits, fashion-mnist, mnist.*class folder"):
        load_classification_data("cifar10")
    with pytest.raises(ValueError, match="Did you mean 'digits'"):
        load_classification_data("digitz")
    with pytest.raises(FileNotFoundError, match="photos/nope: no such file or folder"):
        load_classification_data("photos/nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="x.txt: not a data source"):
        load_classification_data(str(tmp_path / "x.txt"))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_classification_data("digits", channels=2)


def test_val_data_from_an_idx_folder_resized_on_access(tmp_path: Path) -> None:
    _write_idx_set(tmp_path / "train", test=False)
    _write_idx_set(tmp_path / "other", n_train=9, test=False)
    data = load_classification_data(str(tmp_path / "train"), val_data=str(tmp_path / "other"), image_size=12,
                                    memory_limit_mb=0)
    assert isinstance(data.val, ConvertedSplit) and len(data.val) == 9 and data.val[0][0].shape == (1, 12, 12)
    assert data.val.labels.tolist() == [0, 1, 2] * 3 and len(data.train) == 30 and not data.val_is_test
