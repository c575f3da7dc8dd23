"""`ninshiki verify train|val|enroll|identify` end to end on scikit-learn's digits (open set: 7, 8 and 9 are
never trained on nor validated on; 3 and 6, drawn with the seed, are the validation identities) and on tiny
identity folders made from them."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from ninshiki.api.verify_eval import labels_of, load_verify_data
from ninshiki.cli import main
from ninshiki.data.formats.pairs import read_pairs, write_pairs
from ninshiki.engine import checkpoint

TRAIN = ["--test-classes", "7,8,9", "--epochs", "2", "--batches-per-epoch", "5", "--p", "4", "--k", "4",
         "--embedding-dim", "16", "--augment", "none", "--device", "cpu"]
VAL_IDENTITIES = ["3", "6"]     # 0.2 of the 7 training identities (at least two), drawn with seed 0
KEYS = {"auc", "eer", "tar@far=1e-2", "tar@far=1e-3", "best_acc", "best_acc_std", "threshold", "rank1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # One intra-op thread, as conftest's per-test fixture gives the tests (it is set up after module fixtures):
    # the thread count changes the order of float reductions, so the resume test's runs must share it.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("verify") / "run"
        assert main(["verify", "train", "--data", "digits", *TRAIN, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    return out


def _digit_folders(root, identities: dict[str, int], per_identity: int, *, offset: int = 0, lfw: bool = False):
    """Identity folders of digit images (PNG, or LFW-named JPEG: name/name_0001.jpg)."""
    digits = load_digits()
    for name, digit in identities.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(digits.target == digit)[offset:offset + per_identity]):
            pixels = np.rint(digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / (f"{name}_{j + 1:04d}.jpg" if lfw else f"{j}.png"))
    return root


def test_train_writes_weights_with_a_verify_record_pairs_log_and_metrics(run) -> None:
    for name in ("best.safetensors", "last.safetensors", "train_state.safetensors", "config.yaml", "log.csv",
                 "curves.png", "val_pairs.txt", "metrics.json"):
        assert (run / name).is_file(), name
    record = checkpoint.read_record(run / "best.safetensors")
    assert record["task"] == "verify" and record["model"] == "triplet_resnet20" and record["metric"] == "cosine"
    assert record["channels"] == 1 and record["image_size"] == [8, 8] and record["embedding_dim"] == 16
    assert record["test_identities"] == ["7", "8", "9"] and record["model_kwargs"]["embedding_dim"] == 16
    assert record["val_identities"] == VAL_IDENTITIES
    assert -1.0 <= record["threshold"] <= 1.0 and record["val_metrics"]["threshold"] == record["threshold"]
    assert set(load_file(run / "best.safetensors")) == set(load_file(run / "last.safetensors"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert KEYS <= set(metrics) and metrics["epochs"] == 2.0 and "rank5" not in metrics   # 2 val identities
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "val_auc" in log[0] and "train_active_triplets" in log[0]
    lines = (run / "val_pairs.txt").read_text().splitlines()
    assert lines[0].startswith("# ninshiki index pairs of digits") and len(lines) == 1 + 10 * 600
    labels = load_digits().target
    pairs = np.array([line.split() for line in lines[1:]], dtype=np.int64)        # (P, 4) a b same fold
    assert np.isin(labels[pairs[:, :2]], [3, 6]).all()                             # validation identities only
    assert ((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == pairs[:, 2]).all()


def test_val_tests_the_held_out_identities_and_reproduces_the_validation(run, tmp_path) -> None:
    weights = ["--weights", str(run / "best.safetensors"), "--device", "cpu"]
    test = tmp_path / "test"          # by default: the run's test identities, never seen in training
    assert main(["verify", "val", "--data", "digits", *weights, "--out", str(test)]) == 0
    labels = load_digits().target
    pairs = np.array([line.split() for line in (test / "pairs.txt").read_text().splitlines()[1:]], dtype=np.int64)
    assert np.isin(labels[pairs[:, :2]], [7, 8, 9]).all() and len(pairs) == 6000
    out = tmp_path / "val"            # the validation identities give the metrics training chose best.safetensors by
    assert main(["verify", "val", "--data", "digits", "--test-classes", ",".join(VAL_IDENTITIES), *weights,
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == KEYS
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k != "threshold")
    trained = json.loads((run / "metrics.json").read_text())
    assert all(metrics[k] == trained[k] for k in KEYS)         # the run's validation identities and pairs
    assert json.loads((test / "metrics.json").read_text())["auc"] != metrics["auc"]
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6000 and list(rows[0]) == ["pair", "score", "same", "fold"]
    same, scores = [int(r["same"]) for r in rows], [float(r["score"]) for r in rows]
    assert metrics["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert sorted({int(r["fold"]) for r in rows}) == list(range(10))
    assert (out / "roc.png").is_file() and (out / "pairs.txt").read_text() == (run / "val_pairs.txt").read_text()
    again = tmp_path / "again"         # the written pairs file gives the same evaluation (rank-1: of --test-classes)
    assert main(["verify", "val", "--data", "digits", "--test-classes", ",".join(VAL_IDENTITIES), "--pairs",
                 str(run / "val_pairs.txt"), *weights, "--out", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text()) == metrics


def test_val_on_new_identity_folders_and_their_pairs_files(run, tmp_path) -> None:
    people = _digit_folders(tmp_path / "people", {f"p{d}": d for d in range(10)}, 12, lfw=True)
    common = ["--weights", str(run / "best.safetensors"), "--pairs-per-fold", "20", "--folds", "5", "--device", "cpu"]
    assert main(["verify", "val", "--data", str(people), *common, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(first) == KEYS | {"rank5"}                      # every identity: new data, 10 of them
    written = read_pairs(tmp_path / "a" / "pairs.txt")         # files relative to the pairs file
    assert len(written) == 200 and written.num_folds == 5 and all(p.is_file() for p in written.a + written.b)
    assert write_pairs(people / "pairs.txt", written) == "lfw"  # LFW's format names images under its folder
    for data in (["--data", str(people)], []):                 # without --data, identities are the folders
        out = tmp_path / f"b{len(data)}"
        assert main(["verify", "val", *data, "--pairs", str(people / "pairs.txt"), *common, "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert all(metrics[k] == pytest.approx(first[k], abs=1e-12) for k in KEYS - {"rank1"})
    assert 0.0 <= metrics["rank1"] <= 1.0 and "rank5" in metrics     # over the pairs' images of 10 identities


def test_bad_pairs_lines_are_errors_naming_the_line(run, tmp_path, capsys) -> None:
    people = _digit_folders(tmp_path / "people", {"a": 1, "b": 2}, 3)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("people/a/0.png people/a/1.png 1\npeople/a/0.png people/b/0.png maybe\n")
    weights = str(run / "best.safetensors")
    assert main(["verify", "val", "--data", str(people), "--pairs", str(pairs), "--weights", weights,
                 "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert f"{pairs}, line 2" in err and "'same' must be 1" in err
    index = tmp_path / "index.txt"
    index.write_text("# ninshiki index pairs of digits: item_a item_b same fold\n1 2 1 0\n3 x 0 0\n")
    assert main(["verify", "val", "--data", "digits", "--pairs", str(index), "--weights", weights,
                 "--out", str(tmp_path / "w")]) == 2
    assert f"{index}, line 3" in capsys.readouterr().err
    index.write_text("# ninshiki index pairs of digits: item_a item_b same fold\n1 99999 1 0\n")
    assert main(["verify", "val", "--data", "digits", "--pairs", str(index), "--weights", weights,
                 "--out", str(tmp_path / "w")]) == 2
    assert "line 2: item 99999 is past the 1797 images" in capsys.readouterr().err
    index.write_text("# ninshiki index pairs of the training split of fashion-mnist: item_a item_b same fold\n"
                     "1 2 1 0\n")
    assert main(["verify", "val", "--data", "digits", "--pairs", str(index), "--weights", weights,
                 "--out", str(tmp_path / "w")]) == 2
    assert "count items of the training split of fashion-mnist, but --data gives digits" in capsys.readouterr().err


def test_a_model_of_another_task_is_a_clear_error(run, tmp_path, capsys) -> None:
    state = load_file(run / "best.safetensors")
    classifier = tmp_path / "classifier.safetensors"
    checkpoint.save_weights(classifier, state, {"task": "classify", "model": "resnet20", "classes": ["0", "1"]})
    assert main(["verify", "val", "--data", "digits", "--weights", str(classifier), "--out", str(tmp_path / "v")]) == 2
    assert "holds a 'classify' model (resnet20), not an embedding network" in capsys.readouterr().err
    assert main(["verify", "enroll", "--weights", str(classifier), "--gallery", str(tmp_path),
                 "--out", str(tmp_path / "g.npz")]) == 2
    assert "not an embedding network" in capsys.readouterr().err
    assert main(["verify", "train", "--data", "digits", "--model", "resnet20", "--out", str(tmp_path / "t")]) == 2
    assert "resnet20 is a classify model; verify train needs an embedding network" in capsys.readouterr().err


def test_enroll_then_identify(run, tmp_path, capsys) -> None:
    people = _digit_folders(tmp_path / "people", {"ann": 3, "bob": 4, "cy": 5, "dee": 6}, 4)
    gallery = tmp_path / "gallery.npz"
    weights = str(run / "best.safetensors")
    assert main(["verify", "enroll", "--weights", weights, "--gallery", str(people), "--out", str(gallery),
                 "--workers", "0"]) == 0
    with np.load(gallery, allow_pickle=False) as npz:
        assert set(npz.files) == {"names", "labels", "embeddings", "paths", "weights_sha256", "record"}
        assert npz["names"].tolist() == ["ann", "bob", "cy", "dee"] and npz["labels"].tolist() == [0] * 4 + [1] * 4 + \
            [2] * 4 + [3] * 4
        assert npz["embeddings"].shape == (16, 16) and np.allclose(np.linalg.norm(npz["embeddings"], axis=1), 1.0)
        assert json.loads(str(npz["record"]))["task"] == "verify"
    probes = tmp_path / "probes"
    probes.mkdir()
    for name in ("bob", "dee"):                     # the same pixels as an enrolled image, under another name
        Image.open(people / name / "2.png").save(probes / f"{name}_again.png")
    _digit_folders(tmp_path / "other", {"zero": 0}, 1)
    (tmp_path / "other" / "zero" / "0.png").rename(probes / "stranger.png")
    out = tmp_path / "id"
    assert main(["verify", "identify", "--weights", weights, "--gallery", str(gallery), "--source", str(probes),
                 "--threshold", "0.9999", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads((out / "identify.json").read_text())
    assert result["threshold"] == 0.9999
    found = {r["path"].rsplit("/", 1)[-1]: r for r in result["results"]}
    assert [found[f"{n}_again.png"]["identity"] for n in ("bob", "dee")] == ["bob", "dee"]
    assert found["bob_again.png"]["top"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert found["stranger.png"]["identity"] == "unknown" and len(found["stranger.png"]["top"]) == 4
    sims = [t["similarity"] for t in found["stranger.png"]["top"]]
    assert sims == sorted(sims, reverse=True)
    assert any(line.split()[:2] == ["stranger.png", "unknown"] for line in table.splitlines())
    rows = (out / "identify.csv").read_text().splitlines()
    assert rows[0] == "path,identity,rank,candidate,similarity" and len(rows) == 1 + 3 * 4
    # the record's validation threshold is the default
    assert main(["verify", "identify", "--weights", weights, "--gallery", str(gallery), "--source",
                 str(probes / "bob_again.png"), "--out", str(tmp_path / "id2")]) == 0
    threshold = json.loads((tmp_path / "id2" / "identify.json").read_text())["threshold"]
    assert threshold == checkpoint.read_record(weights)["threshold"]
    # embeddings of other weights are not comparable
    other = tmp_path / "other.safetensors"
    checkpoint.save_weights(other, load_file(weights), {**checkpoint.read_record(weights), "epoch": 99})
    assert main(["verify", "identify", "--weights", str(other), "--gallery", str(gallery), "--source", str(probes),
                 "--out", str(tmp_path / "id3")]) == 2
    assert "was enrolled with other weights" in capsys.readouterr().err


def test_a_source_with_its_own_test_split_tests_on_its_test_identities(tmp_path) -> None:
    root = tmp_path / "set"
    _digit_folders(root / "train", {"a": 0, "b": 1, "c": 2, "d": 3}, 5)
    _digit_folders(root / "test", {"a": 0, "b": 1, "c": 2, "d": 3}, 3, offset=5)
    data = load_verify_data(str(root), test_classes="c,3", test_fraction=None, image_size=8, channels=1)
    assert data.test_identities == ["c", "d"] and len(data.test.split) == 6
    assert all("/test/" in p for p in data.test.paths)
    assert data.test.description.startswith("the test split of") and data.test.labels.tolist() == [2] * 3 + [3] * 3
    drawn = load_verify_data(str(root / "train"), test_classes=None, test_fraction=0.5, seed=3, image_size=8)
    assert len(drawn.test_identities) == 2 and len(drawn.test.split) == 10
    assert set(labels_of(drawn.test.split).tolist()) == {drawn.classes.index(n) for n in drawn.test_identities}
    people = tmp_path / "people"                # train/ and test/ of different people: already split
    _digit_folders(people / "train", {"a": 0, "b": 1, "c": 2}, 4)
    _digit_folders(people / "test", {"x": 3, "y": 4}, 3)
    split = load_verify_data(str(people), test_classes=None, test_fraction=0.25, image_size=8)
    assert split.test_identities == ["x", "y"] and len(split.test.split) == 6
    assert load_verify_data(str(people), test_classes="y", test_fraction=None, image_size=8).test_identities == ["y"]
    with pytest.raises(ValueError, match="'e' is neither a class name nor an index below 4"):
        load_verify_data(str(root), test_classes="a,e", test_fraction=None, image_size=8)


def test_resume_after_an_interruption_ends_with_the_same_weights(run, tmp_path, monkeypatch) -> None:
    from ninshiki.api import verify_train

    first_epoch_only = verify_train.run_epoch

    def interrupted(setup, epoch, progress, deadline):
        if epoch == 1:
            raise KeyboardInterrupt
        return first_epoch_only(setup, epoch, progress, deadline)

    out = tmp_path / "run"
    monkeypatch.setattr(verify_train, "run_epoch", interrupted)
    assert main(["verify", "train", "--data", "digits", *TRAIN, "--out", str(out)]) == 130
    monkeypatch.undo()
    assert main(["verify", "train", "--resume", str(out)]) == 0
    resumed, straight = load_file(out / "last.safetensors"), load_file(run / "last.safetensors")
    assert all(np.array_equal(resumed[k].numpy(), straight[k].numpy()) for k in straight)
    assert len((out / "log.csv").read_text().splitlines()) == 3


def test_the_schedule_sets_the_next_steps_rate_from_the_warmups_start(tmp_path) -> None:
    import math

    from ninshiki.api.verify_train import build_setup, set_schedule
    from ninshiki.config_verify import VerifyTrainConfig
    from ninshiki.engine.runtime import make_runtime

    config = VerifyTrainConfig(data="digits", test_classes="7,8,9", p=4, k=4, batches_per_epoch=5, lr=1e-3,
                               out=str(tmp_path))
    setup = build_setup(config, make_runtime(device="cpu", amp="off", channels_last="off"))
    groups = setup.ctx.optimizer.param_groups
    set_schedule(setup, 2)                 # 5 warmup steps from lr / 100, then a cosine over 5
    assert [g["lr"] for g in groups] == pytest.approx([1e-5] * len(groups), rel=1e-12)
    for _ in range(7):
        setup.ctx.optimizer.step()
        setup.ctx.scheduler.step()
    set_schedule(setup, 4)                 # re-planned: the next step is the 3rd of a 15-step cosine
    want = 1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 15))
    assert [g["lr"] for g in groups] == pytest.approx([want] * len(groups), rel=1e-12)


def test_training_starts_from_a_classifiers_trunk_or_a_verify_run(run, tmp_path) -> None:
    from ninshiki.api.verify_train import build_setup
    from ninshiki.config_verify import VerifyTrainConfig
    from ninshiki.engine.runtime import make_runtime
    from ninshiki.models.classify.resnet_cifar import resnet20

    classifier = resnet20(num_classes=10, in_channels=1)
    path = tmp_path / "classifier.safetensors"
    checkpoint.save_weights(path, classifier.state_dict(), {"task": "classify", "model": "resnet20"})
    runtime = make_runtime(device="cpu", amp="off", channels_last="off")
    config = VerifyTrainConfig(data="digits", test_classes="8,9", weights=str(path), out=str(tmp_path / "a"))
    trunk = build_setup(config, runtime).ctx.bare.trunk.state_dict()
    assert all(np.array_equal(trunk[k].numpy(), v.numpy()) for k, v in classifier.state_dict().items()
               if not k.startswith("fc."))
    config = VerifyTrainConfig(data="digits", test_classes="8,9", weights=str(run / "best.safetensors"),
                               embedding_dim=32, out=str(tmp_path / "b"))      # a new embedding size: new last layer
    tuned, trained = build_setup(config, runtime).ctx.bare.state_dict(), load_file(run / "best.safetensors")
    assert tuned["head.3.weight"].shape == (32, 64)
    assert all(np.array_equal(tuned[k].numpy(), v.numpy()) for k, v in trained.items() if not k.startswith("head.3"))
    detector = tmp_path / "detector.safetensors"
    checkpoint.save_weights(detector, classifier.state_dict(), {"task": "detect", "model": "yolov1"})
    with pytest.raises(ValueError, match="validation pairs need at least two identities, got 1"):
        build_setup(VerifyTrainConfig(data="digits", test_classes="8,9", val_classes="7"), runtime)
    with pytest.raises(ValueError, match="holds a 'detect' model; verify train starts from"):
        build_setup(VerifyTrainConfig(data="digits", test_classes="8,9", weights=str(detector)), runtime)
