import math

import torch
from torch import nn

from ninshiki.engine.optim import lr_factor, make_optimizer, parameter_groups


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 1e-4)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias),
                                                   id(model[3].bias)}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4
    assert isinstance(make_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05), torch.optim.AdamW)


def test_warmup_then_cosine_to_zero() -> None:
    f = lr_factor(schedule="cosine", total_steps=110, warmup_steps=10, steps_per_epoch=10)
    assert math.isclose(f(0), 0.01) and math.isclose(f(5), 0.01 + 0.99 * 0.5)
    assert math.isclose(f(10), 1.0) and math.isclose(f(60), 0.5) and f(110) < 1e-12


def test_step_schedule() -> None:
    f = lr_factor(schedule="step", total_steps=100, warmup_steps=0, steps_per_epoch=10, step_epochs=3, gamma=0.1)
    assert f(29) == 1.0 and math.isclose(f(30), 0.1) and math.isclose(f(60), 0.01)


def test_cpu_steps_are_fused_and_equal_the_per_tensor_update() -> None:
    """On the CPU the optimizers use PyTorch's fused kernels (faster); the update is the per-tensor one's."""
    for name in ("adamw", "sgd"):
        torch.manual_seed(0)
        # no bias before the batch norm: its gradient is rounding noise, which Adam scales up to full steps
        model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
        reference = [p.detach().clone() for p in model.parameters()]
        optimizer = make_optimizer(model, name=name, lr=0.1, weight_decay=0.01)
        assert all(group["fused"] for group in optimizer.param_groups)
        shadow = [p.detach().clone().requires_grad_() for p in reference]
        by_id = {id(p): s for p, s in zip(model.parameters(), shadow)}
        plain_groups = [{"params": [by_id[id(p)] for p in group["params"]], "weight_decay": group["weight_decay"]}
                        for group in optimizer.param_groups]
        plain = (torch.optim.AdamW(plain_groups, lr=0.1) if name == "adamw"
                 else torch.optim.SGD(plain_groups, lr=0.1, momentum=0.9, nesterov=True))
        names = [n for n, _ in model.named_parameters()]
        for _ in range(3):
            x = torch.randn(4, 3, 8, 8)
            for params, opt in ((list(model.parameters()), optimizer), (shadow, plain)):
                out = torch.func.functional_call(model, dict(zip(names, params)), x)
                opt.zero_grad()
                out.square().mean().backward()
                opt.step()
        for fused, per_tensor in zip(model.parameters(), shadow):
            torch.testing.assert_close(fused, per_tensor, rtol=1e-5, atol=1e-6)
