import pytest
import torch

from ninshiki.engine import checkpoint


def test_train_state_round_trips_nested_optimizer_state(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": checkpoint.rng_states(), "epoch": 3,
             "history": [{"loss": 0.5}], "none": None}
    checkpoint.save_train_state(tmp_path / "s.safetensors", state)
    loaded = checkpoint.load_train_state(tmp_path / "s.safetensors")
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    fresh.load_state_dict(loaded["optimizer"])
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fresh.state_dict()["state"][0][key], optimizer.state_dict()["state"][0][key])
    assert fresh.param_groups[0]["lr"] == 0.1 and tuple(fresh.param_groups[0]["betas"]) == (0.9, 0.999)
    assert torch.equal(loaded["rng"]["torch"], state["rng"]["torch"])
    assert (loaded["epoch"], loaded["history"], loaded["none"]) == (3, [{"loss": 0.5}], None)


def test_weights_carry_their_record(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    checkpoint.save_weights(path, {"w": torch.ones(2)}, {"model": "resnet20", "classes": ["a", "b"]})
    record = checkpoint.read_record(path)
    assert record["model"] == "resnet20" and record["classes"] == ["a", "b"] and record["format_version"] == 1
    assert not list(tmp_path.glob(".*tmp*"))          # the atomic write left no temporary file


def test_bad_files_name_themselves(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        checkpoint.read_record(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="junk.safetensors"):
        checkpoint.read_record(junk)
    with pytest.raises(FileNotFoundError, match="train_state"):
        checkpoint.load_train_state(tmp_path / "train_state.safetensors")
