"""The same train command under torchrun, data-parallel on 2 CPU processes with gloo."""
import json
import os
import socket
import subprocess
import sys

from ninshiki.data.datasets import load_classification_data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes(tmp_path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "ninshiki", "classify", "train", "--data", "digits", "--model", "vgg_small", "--epochs", "2",
               "--batch-size", "32", "--lr", "0.05", "--augment", "crop", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["top1"] > 0.8               # 2 epochs on digits; chance is 0.1
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3                      # one writer: header + 2 epochs, not 4
    # The validation metric was reduced over both ranks' shards: the confusion matrix counts every image.
    confusion = [[int(v) for v in line.split(",")[1:]] for line in (out / "confusion.csv").read_text().splitlines()[1:]]
    assert sum(map(sum, confusion)) == len(load_classification_data("digits").val)
