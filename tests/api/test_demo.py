import json

from ninshiki.cli import main


def test_demo_writes_every_result_and_prints_where(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    for name in ("train/best.safetensors", "train/metrics.json", "train/curves.png", "val/metrics.json",
                 "val/confusion.png", "val/filters.png", "predict/predictions.json", "predict/predictions.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "val" / "metrics.json").read_text())["top1"] > 0.5   # chance is 0.1
    predictions = json.loads((out / "predict" / "predictions.json").read_text())
    assert len(predictions) == len(list((out / "samples").glob("*.png"))) == 24
