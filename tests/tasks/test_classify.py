import torch
import torch.nn.functional as F

from ninshiki.structures import ClassifierOutput
from ninshiki.tasks.classify import ClassifyTask


def test_auxiliary_heads_add_their_weighted_cross_entropy() -> None:
    torch.manual_seed(0)
    logits, aux1, aux2 = torch.randn(3, 5, 4).unbind(0)
    labels = torch.tensor([0, 3, 1, 2, 2])
    losses = ClassifyTask(aux_weight=0.3).loss(ClassifierOutput(logits, (aux1, aux2)), labels)
    expected = F.cross_entropy(logits, labels) + 0.3 * (F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels))
    torch.testing.assert_close(losses["loss"], expected)
    torch.testing.assert_close(losses["ce"], F.cross_entropy(logits, labels))


def test_plain_logits_and_label_smoothing() -> None:
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = ClassifyTask(label_smoothing=0.1).loss(logits, labels)
    torch.testing.assert_close(losses["loss"], F.cross_entropy(logits, labels, label_smoothing=0.1))
    assert "aux" not in losses
    assert ClassifyTask.logits(ClassifierOutput(logits)) is logits
