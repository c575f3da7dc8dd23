"""Training options that change how a run ends: early stopping, the NaN guard, fine-tuning a torchvision file."""
import json

import pytest
import torch
import torchvision

from ninshiki.api.classify_train import train
from ninshiki.cli import main
from ninshiki.config import TrainConfig
from ninshiki.engine.loop import NonFiniteLossError


def test_patience_stops_a_run_that_stopped_improving(tmp_path) -> None:
    # With a negligible learning rate only the BatchNorm statistics move, so top-1 soon stops improving.
    metrics = train(TrainConfig(data="digits", model="vgg_small", epochs=30, lr=1e-12, warmup_epochs=0, patience=2,
                                schedule="constant", device="cpu", out=str(tmp_path)))
    assert metrics["epochs"] == metrics["best_epoch"] + 2 < 30
    assert len((tmp_path / "log.csv").read_text().strip().splitlines()) == 1 + metrics["epochs"]


def test_a_non_finite_loss_stops_naming_the_step(tmp_path, capsys) -> None:
    config = TrainConfig(data="digits", model="vgg_small", epochs=2, lr=1e12, warmup_epochs=0, momentum=0.0,
                         device="cpu", out=str(tmp_path))
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) at step \d+ \(epoch 1\)"):
        train(config)
    assert main(["classify", "train", "--data", "digits", "--model", "vgg_small", "--lr", "1e12", "--warmup-epochs",
                 "0", "--momentum", "0", "--device", "cpu", "--out", str(tmp_path / "cli")]) == 2
    assert "loss became" in capsys.readouterr().err


def test_fine_tune_a_torchvision_checkpoint_on_class_folders(tiny_folder, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    checkpoint = tmp_path / "tv_resnet18.pth"
    torch.save(reference.state_dict(), checkpoint)
    out = tmp_path / "pets"
    assert main(["classify", "train", "--data", str(tiny_folder), "--model", "resnet18", "--weights", str(checkpoint),
                 "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--lr", "0.01", "--clip-grad", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    assert "re-initialised" in capsys.readouterr().err      # the CLI tells the user the classifier is new
    tuned = torch.load(checkpoint, weights_only=True)         # the user's file is untouched
    assert all(torch.equal(tuned[k], v) for k, v in reference.state_dict().items())
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(json.loads(json.dumps(metrics))) >= {"top1", "loss"}
