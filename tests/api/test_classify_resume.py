"""A killed run continued with --resume ends with exactly the weights of a run never interrupted (CPU)."""
import pytest
import torch
from safetensors.torch import load_file

from ninshiki.api.classify_train import train
from ninshiki.config import TrainConfig


class Killed(Exception):
    pass


def _kill_after(epoch_index: int):
    def callback(epoch: int, row: dict) -> None:
        if epoch == epoch_index:
            raise Killed
    return callback


@pytest.mark.parametrize("model, ema", [("vgg_small", True), ("resnet20", False)])
def test_resume_equals_uninterrupted(tmp_path, model: str, ema: bool) -> None:
    # vgg_small has dropout (global RNG state) and EMA; resnet20 plain SGD state.
    def config(out: str, **kw) -> TrainConfig:
        return TrainConfig(data="digits", model=model, epochs=3, batch_size=64, lr=0.05, ema=ema, ema_decay=0.9,
                           augment="crop", device="cpu", out=str(tmp_path / out), **kw)

    straight = train(config("straight"))
    with pytest.raises(Killed):
        train(config("killed"), callbacks=[_kill_after(1)])          # dies after its 2nd epoch was saved
    resumed = train(config("ignored", resume=str(tmp_path / "killed")))
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "killed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    resumed.pop("train_time_s"), straight.pop("train_time_s")       # wall time is the one thing that differs
    assert resumed == straight
    assert not (tmp_path / "ignored").exists()      # resume writes into the run it continues


def test_resume_of_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        train(TrainConfig(resume=str(tmp_path)))
