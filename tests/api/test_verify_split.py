"""The three-way identity split of `verify train`: training, validation and test identities are disjoint, the
test identities' images are never read, validation identities come from the training split and pick
best.safetensors (or, with none, best = last)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from ninshiki.api.verify_eval import labels_of
from ninshiki.api.verify_split import choose_val_identities, describe_identities, draw_validation, load_train_data
from ninshiki.cli import main
from ninshiki.config_verify import VerifyTrainConfig
from ninshiki.engine import checkpoint

FASHION = Path("/usr/share/datasets/fashion-mnist")
DIGITS = [str(d) for d in range(10)]


def _folders(root: Path, identities: dict[str, int], per_identity: int, *, offset: int = 0) -> Path:
    """Identity folders of 8 x 8 digit PNGs."""
    digits = load_digits()
    for name, digit in identities.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(digits.target == digit)[offset:offset + per_identity]):
            Image.fromarray(np.rint(digits.images[i] * 255 / 16).astype(np.uint8)).save(root / name / f"{j}.png")
    return root


def _load(source: str, **kwargs):
    options = {"test_classes": None, "test_fraction": None, "val_classes": None, "val_fraction": 0.2,
               "image_size": 8, "channels": 1, **kwargs}
    return load_train_data(source, **options)


def test_draw_validation_takes_at_least_two_and_leaves_two() -> None:
    for count in range(4, 30):
        names = [f"id{i}" for i in range(count)]
        for fraction in (0.01, 0.2, 0.5, 0.99):
            val = draw_validation(names, fraction, seed=count)
            assert 2 <= len(val) <= count - 2 and len(set(val)) == len(val) and set(val) <= set(names)
            assert val == sorted(val, key=names.index) == draw_validation(names, fraction, seed=count)
    assert len(draw_validation([f"i{i}" for i in range(100)], 0.2, seed=0)) == 20
    assert draw_validation(list("abc"), 0.5, seed=0) == [] and draw_validation(list("abcdef"), 0.0, seed=0) == []
    assert {tuple(draw_validation(DIGITS, 0.3, seed=s)) for s in range(6)} != {tuple(draw_validation(DIGITS, 0.3, 0))}


def test_digits_split_three_ways_without_overlap() -> None:
    data = _load("digits", test_classes="7,8,9", seed=0)
    assert data.test_identities == ["7", "8", "9"] and data.val_identities == ["3", "6"]
    assert data.train_identities == ["0", "1", "2", "4", "5"]
    train, val = set(labels_of(data.train).tolist()), set(data.val.labels.tolist())
    assert train == {0, 1, 2, 4, 5} and val == {3, 6}
    digits = load_digits().target
    assert len(data.train) == np.isin(digits, [0, 1, 2, 4, 5]).sum() and len(data.val.labels) == np.isin(digits, [3, 6]).sum()
    assert (digits[data.val.source_index] == data.val.labels).all() and len(data.val.source) == len(digits)
    assert describe_identities(data) == "identities: 5 train (0, 1, 2, 4, 5), 2 val (3, 6), 3 test (7, 8, 9)"
    drawn = _load("digits", test_fraction=0.3, seed=5)           # drawn test and validation identities
    groups = [set(drawn.train_identities), set(drawn.val_identities), set(drawn.test_identities)]
    assert [len(g) for g in groups] == [5, 2, 3] and set.union(*groups) == set(DIGITS)
    named = _load("digits", test_classes="8,9", val_classes="0,7")
    assert named.val_identities == ["0", "7"] and named.train_identities == DIGITS[1:7]
    with pytest.raises(ValueError, match="val_classes: 'seven' is neither a class name nor an index below 10"):
        _load("digits", test_classes="8,9", val_classes="0,seven")
    none = _load("digits", test_classes="9", val_fraction=0.0)
    assert none.val is None and none.val_identities == [] and len(none.train_identities) == 9


def test_val_classes_that_are_test_identities_are_errors_naming_them(capsys) -> None:
    with pytest.raises(ValueError, match="val_classes 8 also held out for testing"):
        VerifyTrainConfig(data="digits", test_classes="7,8", val_classes="1,8")
    with pytest.raises(ValueError, match="val_fraction must be in"):
        VerifyTrainConfig(data="digits", val_fraction=1.0)
    with pytest.raises(ValueError, match=r"val_classes: 7 is held out for testing; .* training identities \(0, 1"):
        _load("digits", test_classes="7,8,9", val_classes="2,7")      # a name
    with pytest.raises(ValueError, match="val_classes: 8, 9 are held out for testing"):
        choose_val_identities(DIGITS, DIGITS[:8], ["8", "9"], val_classes="8,9", val_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="leave fewer than two to train on"):
        _load("digits", test_classes="5,6,7,8,9", val_classes="0,1,2,3")
    assert main(["verify", "train", "--data", "digits", "--test-classes", "7,8", "--val-classes", "8,0",
                 "--out", "unused"]) == 2                        # the flags exist and the clash is named
    assert "val_classes 8 also held out for testing" in capsys.readouterr().err


def test_fewer_than_four_training_identities_mean_no_validation(capsys) -> None:
    data = _load("digits", test_classes="3,4,5,6,7,8,9")
    assert data.val is None and data.train_identities == ["0", "1", "2"]
    assert "3 training identities are too few" in capsys.readouterr().err


def test_folder_layouts_take_validation_from_the_train_folder_and_never_read_the_test_folder(tmp_path) -> None:
    same = tmp_path / "same"                       # train/ + test/ of the same identities
    _folders(same / "train", {c: i for i, c in enumerate("abcdef")}, 4)
    _folders(same / "test", {c: i for i, c in enumerate("abcdef")}, 2, offset=4)
    (same / "test" / "a" / "broken.png").write_bytes(b"not a png")     # strict: an error if it were read
    data = _load(str(same), test_classes="e,f", val_classes="b,0", strict=True)
    assert (data.train_identities, data.val_identities, data.test_identities) == (["c", "d"], ["a", "b"], ["e", "f"])
    assert all("/train/" in p for p in data.train.paths + data.val.paths) and len(data.val.labels) == 8
    people = tmp_path / "people"                   # train/ + test/ of different people: all of test/ is tested
    _folders(people / "train", {c: i for i, c in enumerate("abcd")}, 3)
    _folders(people / "test", {"x": 7, "y": 8}, 3)
    (people / "test" / "x" / "broken.png").write_bytes(b"not a png")
    split = _load(str(people), test_fraction=0.5, strict=True)
    assert split.test_identities == ["x", "y"] and len(split.val_identities) == 2 and len(split.train_identities) == 2
    assert set(split.val_identities + split.train_identities) == set("abcd")
    with pytest.raises(ValueError, match="val_classes: x is held out for testing"):
        _load(str(people), val_classes="a,x")


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST IDX files not found in {FASHION}")
def test_fashion_mnist_validates_on_training_split_identities() -> None:
    data = load_train_data("fashion-mnist", test_classes="6,7,8,9", test_fraction=None, val_classes="4,5",
                           val_fraction=0.2)
    assert data.val_identities == ["Coat", "Sandal"] and len(data.train_identities) == 4
    assert len(data.val.source) == 60000 and len(data.val.labels) == 12000 and len(data.train) == 24000
    assert data.val.description == "the training split of fashion-mnist"


def test_training_validates_on_the_validation_identities_only(tmp_path, monkeypatch) -> None:
    from ninshiki.api import verify_train

    seen = []
    embed = verify_train.embed_split

    def spy(model, split, *args, **kwargs):
        seen.append(sorted(set(labels_of(split).tolist())))
        return embed(model, split, *args, **kwargs)

    monkeypatch.setattr(verify_train, "embed_split", spy)
    common = ["--data", "digits", "--test-classes", "7,8,9", "--epochs", "2", "--batches-per-epoch", "2",
              "--p", "4", "--k", "2", "--embedding-dim", "8", "--augment", "none", "--pairs-per-fold", "10",
              "--folds", "2", "--device", "cpu", "--workers", "0"]
    out = tmp_path / "val"
    assert main(["verify", "train", *common, "--val-classes", "0,5", "--out", str(out)]) == 0
    assert seen == [[0, 5], [0, 5]]                                   # one validation per epoch, 0 and 5 only
    with open(out / "log.csv", newline="") as f:
        assert {"val_auc", "val_rank1"} <= set(next(csv.reader(f)))
    record = checkpoint.read_record(out / "best.safetensors")
    assert record["val_identities"] == ["0", "5"] and record["test_identities"] == ["7", "8", "9"]
    seen.clear()
    bare = tmp_path / "none"
    assert main(["verify", "train", *common, "--val-fraction", "0", "--out", str(bare)]) == 0
    assert seen == [] and checkpoint.read_record(bare / "best.safetensors")["val_identities"] == []
    with open(bare / "log.csv", newline="") as f:
        assert not [c for c in next(csv.reader(f)) if c.startswith("val_")]
    best, last = load_file(bare / "best.safetensors"), load_file(bare / "last.safetensors")
    assert all(np.array_equal(best[k].numpy(), last[k].numpy()) for k in last)      # no validation: best = last
    assert json.loads((bare / "metrics.json").read_text())["best_epoch"] == 2.0
    assert not (bare / "val_pairs.txt").exists()
