"""Fashion-MNIST test accuracy against training wall time: ninshiki's best CPU recipe against the plain
recipe a typical PyTorch user writes, one after the other in one invocation on the same machine.

The plain recipe is pytorch/examples' MNIST CNN (two 3x3 convs, max-pool, dropout, two linear layers;
Adadelta lr 1.0 with StepLR gamma 0.7, batch 64, 14 epochs) fed by a Dataset that makes a PIL image per
sample and a DataLoader, as torchvision's FashionMNIST dataset does. It tests after every epoch, as the
example does; its accuracy at a time budget is that of its last epoch finished within the budget.

ninshiki's recipe is trained once per (width, epochs) pair (its cosine schedule is fitted to the run's
length, so a run of E epochs is the recipe for that budget); its accuracy at a budget is the final test
accuracy of the longest run that finished within it. Wall time covers the whole run, per-epoch test evaluation included,
for both. No checkpoint is picked by test accuracy: every number is the last epoch's.

    python benchmarks/classify_fashion_mnist.py                 # CPU, about 30 minutes on 2 cores
    python benchmarks/classify_fashion_mnist.py --device cuda   # the same on a GPU
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

from ninshiki.api.classify_train import train  # noqa: E402
from ninshiki.config import TrainConfig  # noqa: E402
from ninshiki.data.datasets import load_classification_data  # noqa: E402


def ninshiki_recipe(width: int, epochs: int, device: str, out: Path, data_root: str | None = None) -> TrainConfig:
    """The recipe: a narrow VGG with BN (`width`, 2x, 4x channels), Nesterov SGD, warmup + cosine fitted to the
    run, label smoothing, per-sample random crop and flip done on the device, mirror-image test-time
    augmentation, batch 128, data held on the device. Short budgets use a narrower network."""
    return TrainConfig(data="fashion-mnist", data_root=data_root, model="vgg_small",
                       model_kwargs=f"{{width: {width}}}", epochs=epochs, batch_size=128, lr=0.1,
                       weight_decay=5e-4, warmup_epochs=min(1.0, epochs / 4), label_smoothing=0.1,
                       augment="crop-flip", tta=True, device=device, out=str(out / f"ninshiki_w{width}_{epochs}ep"))


def run_ninshiki(runs: list[tuple[int, int]], device: str, out: Path, data_root: str | None) -> list[dict]:
    rows = []
    for width, epochs in runs:
        config = ninshiki_recipe(width, epochs, device, out, data_root)
        start = time.perf_counter()
        train(config)
        wall = time.perf_counter() - start
        log = np.genfromtxt(Path(config.out) / "log.csv", delimiter=",", names=True)
        final = float(np.atleast_1d(log["val_top1"])[-1])
        rows.append({"system": f"ninshiki vgg_small width {width}", "epochs": epochs, "wall_s": wall,
                     "test_top1": final})
        print(f"ninshiki width {width}, {epochs} epochs: {final:.4f} in {wall:.0f}s", flush=True)
    return rows


class PlainNet(nn.Module):
    """pytorch/examples mnist/main.py `Net`, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        return F.log_softmax(self.fc2(self.dropout2(F.relu(self.fc1(x)))), dim=1)


class PilPerSample(Dataset):
    """What torchvision.datasets.FashionMNIST does: a PIL image per sample, then ToTensor and Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def _test(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
    return correct / len(loader.dataset)


def run_plain(device_name: str, budget_s: float, data_root: str | None, epochs: int = 14) -> list[dict]:
    device = torch.device(device_name)
    torch.manual_seed(1)
    data = load_classification_data("fashion-mnist", data_root=data_root)      # the same IDX files, as uint8 arrays
    train_x, train_y = data.train.images[:, 0].numpy(), data.train.labels.numpy()
    test_x, test_y = data.val.images[:, 0].numpy(), data.val.labels.numpy()
    cuda = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = DataLoader(PilPerSample(train_x, train_y), batch_size=64, shuffle=True, **cuda)
    test_loader = DataLoader(PilPerSample(test_x, test_y), batch_size=1000, **cuda)
    model = PlainNet().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    rows, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            F.nll_loss(model(x.to(device)), y.to(device)).backward()
            optimizer.step()
        accuracy = _test(model, test_loader, device)
        scheduler.step()
        wall = time.perf_counter() - start
        rows.append({"system": "plain pytorch/examples CNN", "epochs": epoch, "wall_s": wall, "test_top1": accuracy})
        print(f"plain epoch {epoch}: {accuracy:.4f} at {wall:.0f}s", flush=True)
        if wall > budget_s:
            break
    return rows


def best_within(rows: list[dict], budget_s: float) -> float | None:
    done = [r for r in rows if r["wall_s"] <= budget_s]
    return max(done, key=lambda r: r["wall_s"])["test_top1"] if done else None


def table(ours: list[dict], plain: list[dict], budgets_s: list[float]) -> str:
    lines = ["| budget | plain recipe top-1 | ninshiki top-1 | difference |", "|---|---|---|---|"]
    for budget in budgets_s:
        a, b = best_within(plain, budget), best_within(ours, budget)
        fmt = lambda v: "not finished" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        diff = "" if a is None or b is None else f"{100 * (b - a):+.2f} pt"
        shown = f"{budget:.0f} s" if budget < 120 else f"{budget / 60:.1f} min"
        lines.append(f"| {shown} | {fmt(a)} | {fmt(b)} | {diff} |")
    runs = ["", "| system | epochs | wall time | test top-1 |", "|---|---|---|---|"]
    runs += [f"| {r['system']} | {r['epochs']} | {r['wall_s']:.0f} s | {100 * r['test_top1']:.2f}% |"
             for r in ours + plain]
    return "\n".join(lines + runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--runs", default="16:1,16:2,16:4,24:6,32:8",
                        help="ninshiki runs as comma-separated width:epochs pairs")
    parser.add_argument("--out", default="runs/bench_fm")
    parser.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST IDX files, if not Debian's")
    args = parser.parse_args()
    out, budget = Path(args.out), args.budget_min * 60
    runs = [(int(w), int(e)) for w, e in (pair.split(":") for pair in args.runs.split(","))]
    ours = run_ninshiki(runs, args.device, out, args.data_root)
    plain = run_plain(args.device, budget, args.data_root)
    fixed = {b for b in (60.0, 120.0, 300.0, budget) if b <= budget}
    budgets = sorted(fixed | {r["wall_s"] for r in ours if r["wall_s"] <= budget})
    print(f"\nFashion-MNIST, {args.device}: {describe_machine(args.device)}\n")
    print(table(ours, plain, budgets))
    (out / "results.json").write_text(json.dumps({"machine": describe_machine(args.device), "ninshiki": ours,
                                                  "plain": plain}, indent=2))


if __name__ == "__main__":
    main()
