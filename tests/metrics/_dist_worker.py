"""One rank of the gloo all_reduce test, run as a script by tests/metrics/test_classification.py.

usage: python _dist_worker.py RANK WORLD_SIZE STORE_FILE DATA_FILE OUT_FILE

Loads (logits, labels, bounds) from DATA_FILE, updates a ClassificationMetric with this rank's shard
[bounds[rank], bounds[rank + 1]), all-reduces it and writes compute() and the confusion matrix to OUT_FILE.
"""
from __future__ import annotations

import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from ninshiki.io import write_json
from ninshiki.metrics.classification import ClassificationMetric


def main(rank: int, world_size: int, store_file: str, data_file: str, out_file: str) -> None:
    data = torch.load(data_file)
    logits, labels, bounds = data["logits"], data["labels"], data["bounds"]
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    try:
        metric = ClassificationMetric(logits.shape[1], topk=(1, 3))
        start, stop = bounds[rank], bounds[rank + 1]
        for chunk in range(start, stop, 16):  # several updates per rank, like an evaluation loop
            metric.update(logits[chunk:min(chunk + 16, stop)], labels[chunk:min(chunk + 16, stop)])
        metric.all_reduce()
        result = {"metrics": metric.compute(), "confusion": metric.confusion.tolist()}
    finally:
        dist.destroy_process_group()
    write_json(out_file, result)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6])
