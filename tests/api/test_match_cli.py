"""The `match` commands end to end on small generated data: register objects, find one pasted into a photo at a
known homography, evaluate SIFT on warped pairs and on OpenCV's Oxford pair; and the extractor records."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.cli import main
from ninshiki.config_match import MatchTrainConfig
from ninshiki.match.database import ObjectDatabase
from ninshiki.match.extractors import extractor_from_record, extractor_record, make_extractor
from ninshiki.match.features import as_gray, image_outline
from ninshiki.match.recognize import find
from ninshiki.match.sift import SiftExtractor

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CUP_CORNERS = [[300, 280], [490, 300], [480, 470], [290, 450]]      # where the cup lands in the scene
METRIC_KEYS = ("matching_precision", "repeatability", "mma@1", "mma@3", "mma@5", "homography_acc@3",
               "homography_acc@5", "mean_matches", "seconds_per_pair")


def save_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]) if image.ndim == 3 else image)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | np.ndarray]:
    """objects/: cup.png, cat/ (two views), notes.txt and a blank image; scenes/: the astronaut with the cup
    pasted at a known homography, and a text file."""
    root = tmp_path_factory.mktemp("match")
    cup = skimage.data.coffee()[60:330, 120:480]                                  # (270, 360, 3)
    cat = skimage.data.chelsea()[40:260, 80:360]
    save_rgb(root / "objects" / "cup.png", cup)
    save_rgb(root / "objects" / "cat" / "front.png", cat)
    save_rgb(root / "objects" / "cat" / "turned.jpg", np.rot90(cat).copy())
    save_rgb(root / "objects" / "blank.png", np.full((64, 64), 128, np.uint8))
    (root / "objects" / "notes.txt").write_text("not an image")
    matrix = cv2.getPerspectiveTransform(image_outline(*cup.shape[:2]).astype(np.float32), np.float32(CUP_CORNERS))
    scene = skimage.data.astronaut()                                              # (512, 512, 3)
    warped = cv2.warpPerspective(cup, matrix, (512, 512), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full(cup.shape[:2], 255, np.uint8), matrix, (512, 512)) > 127
    save_rgb(root / "scenes" / "desk.png", np.where(inside[:, :, None], warped, scene))
    (root / "scenes" / "readme.txt").write_text("not an image")
    return {"root": root, "matrix": matrix, "cup_shape": np.array(cup.shape[:2])}


@pytest.fixture(scope="module")
def database(data) -> Path:
    out = data["root"] / "objects.db"
    assert main(["match", "register", "--source", str(data["root"] / "objects"), "--out", str(out),
                 "--max-features", "800"]) == 0
    return out


def test_register_names_objects_by_file_and_folder_and_reports_skips(data, database, capsys) -> None:
    db = ObjectDatabase.load(database)
    assert db.names == ["cat", "cup"] and db.descriptor == "sift"
    assert [db.names[r.label] for r in db.references] == ["cat", "cat", "cup"]
    assert all(50 < len(r.features) <= 800 for r in db.references)
    assert db.references[2].size == (270, 360) and Path(db.references[2].source).is_absolute()
    assert db.extractor_config["extractor"] == "sift" and db.extractor_config["max_features"] == 800
    main(["match", "register", "--source", str(data["root"] / "objects"), "--out", str(data["root"] / "again.db")])
    printed = capsys.readouterr().out
    assert "registered 2 object(s), 3 view(s), sift features" in printed
    assert "cat  2 view(s), features" in printed and "skipped 2:" in printed
    assert "blank.png: 0 keypoints found" in printed and "notes.txt: not an image file" in printed


def test_find_recovers_the_pasted_outline_and_draws_it(data, database, tmp_path) -> None:
    out = tmp_path / "found"
    assert main(["match", "find", "--db", str(database), "--source", str(data["root"] / "scenes"),
                 "--out", str(out), "--draw-matches"]) == 0
    [scene] = json.loads((out / "found.json").read_text())
    assert scene["file"] == "desk.png" and (scene["width"], scene["height"]) == (512, 512)
    [cup] = scene["objects"]                                                      # the cat is not in the scene
    assert cup["name"] == "cup" and cup["label"] == 1 and cup["inliers"] >= 15 and 0 < cup["score"] <= 1
    assert np.abs(np.array(cup["outline"]) - CUP_CORNERS).max() < 2.0
    assert cup["reference"].endswith("cup.png")
    drawn = cv2.imread(str(out / "images" / "desk.png"))
    assert drawn.shape == (512, 512, 3)
    assert cv2.imread(str(out / "matches" / "desk_0_cup.png")).shape == (512, 360 + 512, 3)
    assert "readme.txt" in (out / "skipped.txt").read_text()


def test_find_rebuilds_the_registered_extractor(data, tmp_path) -> None:
    out = tmp_path / "objects.db"
    assert main(["match", "register", "--model", "rootsift", "--source", str(data["root"] / "objects" / "cup.png"),
                 "--out", str(out), "--max-features", "1000"]) == 0
    db = ObjectDatabase.load(out)
    extractor = extractor_from_record(db.descriptor, db.extractor_config)
    assert isinstance(extractor, SiftExtractor) and extractor.name == "rootsift" and extractor.max_features == 1000
    assert extractor_from_record(db.descriptor, db.extractor_config, max_features=50).max_features == 50
    assert main(["match", "find", "--db", str(out), "--source", str(data["root"] / "scenes" / "desk.png"),
                 "--out", str(tmp_path / "found")]) == 0
    [scene] = json.loads((tmp_path / "found" / "found.json").read_text())
    assert [o["name"] for o in scene["objects"]] == ["cup"]


def test_extractors_by_name_and_their_records() -> None:
    sift = make_extractor("sift", max_features=100)
    assert isinstance(sift, SiftExtractor) and not sift.root and sift.max_features == 100
    tuned = SiftExtractor(max_features=None, contrast_threshold=0.02)            # registered from Python
    rebuilt = extractor_from_record("sift", tuned.config())
    assert rebuilt.config() == tuned.config()
    record = extractor_record("rootsift", make_extractor("rootsift"), max_features=2000)
    assert extractor_from_record("rootsift", record).config() == make_extractor("rootsift").config()
    with pytest.raises(ValueError, match="unknown feature extractor 'orb'"):
        make_extractor("orb")
    with pytest.raises(ValueError, match="takes no weights"):
        make_extractor("sift", weights="w.safetensors")
    with pytest.raises(ValueError, match="lift needs --weights"):
        make_extractor("lift")
    with pytest.raises(FileNotFoundError, match="gone: /nowhere/lift.safetensors"):
        extractor_from_record("lift", {"extractor": "lift", "weights": "/nowhere/lift.safetensors"})


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    save_rgb(root / "photos" / "coffee.png", skimage.data.coffee())
    assert main(["match", "pairs", "--photos", str(root / "photos"), "--out", str(root / "pairs"), "--count", "2",
                 "--max-side", "240", "--seed", "1"]) == 0
    return root / "pairs"


def test_eval_on_warped_pairs_writes_metrics_rows_and_pictures(pairs, tmp_path) -> None:
    out = tmp_path / "eval"
    assert main(["match", "eval", "--pairs", str(pairs), "--out", str(out), "--pictures", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == [*METRIC_KEYS, "pairs"] and metrics["pairs"] == 2
    assert metrics["mma@1"] <= metrics["mma@3"] <= metrics["mma@5"] <= 1
    assert metrics["mma@3"] > 0.8 and metrics["homography_acc@5"] == 1.0 and metrics["repeatability"] > 0.3
    with open(out / "pairs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["0000_coffee", "0001_coffee"]
    correct, matches = sum(int(r["correct"]) for r in rows), sum(int(r["matches"]) for r in rows)
    assert metrics["matching_precision"] == pytest.approx(correct / matches)
    assert metrics["mean_matches"] == pytest.approx(matches / 2)
    assert [p.name for p in (out / "matches").iterdir()] == ["0000_coffee.png"]


def test_eval_on_opencv_doc_pair(tmp_path) -> None:
    if not OPENCV_DATA.is_dir():
        pytest.skip(f"OpenCV's sample data (opencv-doc) is not installed at {OPENCV_DATA}")
    out = tmp_path / "graf"
    assert main(["match", "eval", "--pairs", "opencv-doc", "--model", "rootsift", "--max-features", "1000",
                 "--out", str(out), "--pictures", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # graf1 -> graf3 is a 40-degree change of viewpoint: SIFT still matches, less precisely, and the estimated
    # homography lands within a few pixels (1.5 to 6 at the corners, depending on the keypoints and threshold)
    assert metrics["pairs"] == 1 and 0.4 < metrics["mma@3"] < 0.95 and metrics["mean_matches"] > 100
    with open(out / "pairs.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["name"] == "graf1-graf3" and float(row["corner_error"]) < 8
    assert not (out / "matches").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["match", "register", "--model", "lift", "--source", "."], "lift needs --weights"),
    (["match", "register", "--source", "/nowhere/objects"], "/nowhere/objects: no such file or folder"),
    (["match", "find", "--db", "/nowhere/objects.db", "--source", "x.png"], "object database not found"),
    (["match", "find", "--source", "x.png"], "--db is required"),
    (["match", "eval", "--pairs", "/nowhere/pairs"], "/nowhere/pairs: no such folder"),
    (["match", "eval", "--pairs", "p", "--model", "orb"], "model must be one of sift, rootsift, lift"),
    (["match", "eval", "--pairs", "p", "--ratio", "1.5"], "ratio"),
])
def test_bad_commands_are_clear_errors(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_train_builds_lift_config_from_the_fields_given(tmp_path) -> None:
    lift_train = pytest.importorskip("ninshiki.models.match.lift_train")
    from ninshiki.api.match_train import lift_train_config

    default = lift_train.LiftTrainConfig()
    config = lift_train_config(MatchTrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), time_limit=5, seed=3,
                                                batch_size=16, model_kwargs="{det_kernel: 11}"))
    assert (config.photos, config.out, config.time_limit, config.seed) == (str(tmp_path), str(tmp_path / "run"), 5, 3)
    assert config.batch == 16 and config.model_kwargs == {"det_kernel": 11}
    assert (config.lr, config.steps, config.val_photos) == (default.lr, default.steps, default.val_photos)
    assert lift_train_config(MatchTrainConfig(val_check=False)).val_photos == []
    assert lift_train_config(MatchTrainConfig()).photos is None                  # the built-in photos


@pytest.mark.slow
def test_train_then_eval_lift_end_to_end(pairs, tmp_path) -> None:
    pytest.importorskip("ninshiki.models.match.lift_train")
    photos = save_rgb(tmp_path / "photos" / "coffee.png", skimage.data.coffee()).parent
    run = tmp_path / "lift"
    assert main(["match", "train", "--data", str(photos), "--out", str(run), "--steps", "6", "--batch-size", "16",
                 "--val-check", "false"]) == 0
    assert (run / "best.safetensors").is_file() and (run / "log.csv").is_file()
    out = tmp_path / "eval"
    assert main(["match", "eval", "--model", "lift", "--weights", str(run / "best.safetensors"), "--pairs", str(pairs),
                 "--out", str(out), "--max-features", "300"]) == 0
    assert json.loads((out / "metrics.json").read_text())["pairs"] == 2


@pytest.fixture(scope="module")
def lift_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained (seeded) LIFT saved as `match train` saves it: enough to check the plumbing."""
    lift_module = pytest.importorskip("ninshiki.models.match.lift")
    import torch

    from ninshiki.engine import checkpoint

    torch.manual_seed(0)
    model = lift_module.lift()
    path = tmp_path_factory.mktemp("lift") / "lift.safetensors"
    checkpoint.save_weights(path, model.state_dict(), {"model": "lift", "task": "match",
                                                       "model_kwargs": model.model_kwargs()})
    return path


def test_lift_databases_record_their_weights_and_eval_runs_lift(data, pairs, lift_weights, tmp_path) -> None:
    small = save_rgb(tmp_path / "objects" / "cup.png", cv2.resize(skimage.data.coffee()[60:330, 120:480], (180, 135)))
    out = tmp_path / "lift.db"
    assert main(["match", "register", "--model", "lift", "--weights", str(lift_weights), "--source",
                 str(small.parent), "--out", str(out), "--max-features", "300"]) == 0
    db = ObjectDatabase.load(out)
    assert db.descriptor == "lift" and db.extractor_config["weights"] == str(lift_weights.resolve())
    rebuilt = extractor_from_record(db.descriptor, db.extractor_config)       # what `match find` describes with
    again = rebuilt.extract(as_gray(small))
    np.testing.assert_allclose(again.descriptors, db.references[0].features.descriptors, atol=1e-5)
    np.testing.assert_array_equal(again.xy, db.references[0].features.xy)
    assert main(["match", "eval", "--model", "lift", "--weights", str(lift_weights), "--pairs", str(pairs),
                 "--max-features", "300", "--out", str(tmp_path / "eval"), "--pictures", "0"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert list(metrics) == [*METRIC_KEYS, "pairs"] and metrics["mean_matches"] > 0
    with pytest.raises(ValueError, match="holds lift descriptors"):
        find(db, np.zeros((64, 64), np.uint8), extractor=make_extractor("sift"))
