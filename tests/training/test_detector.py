import pytest
import torch
from torch import nn

from nvmsim.models import fc_tanh
from nvmsim.training.detector import (
    BatchedDetector,
    batched_accuracy,
    describe_detector,
    retrain,
    split_model,
)


def test_split_model_default_name_and_errors():
    model = fc_tanh(20, hidden_layers=2, inputs=30)
    ext, det = split_model(model)
    assert [type(m) for m in det] == [nn.Linear] and det[0].in_features == 20
    x = torch.randn(4, 30)
    torch.testing.assert_close(det(ext(x)), model(x))
    assert describe_detector(det) == ([20, 10], "tanh")
    ext2, det2 = split_model(model, "3")
    assert len(det2) == len(model) - 3
    with pytest.raises(ValueError, match="names no layer"):
        split_model(model, "nope")
    with pytest.raises(ValueError, match="both sides"):
        split_model(model, 0)


def test_batched_retraining_equals_independent_retraining():
    """Copies trained together end exactly where each would alone (Adam is elementwise)."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 200, 8, generator=gen)
    y = torch.randint(0, 4, (200,), generator=gen)
    together = BatchedDetector(3, [8, 6, 4], "relu", torch.Generator().manual_seed(1))
    alone = [BatchedDetector(1, [8, 6, 4], "relu") for _ in range(3)]
    for r, det in enumerate(alone):
        with torch.no_grad():
            for p_one, p_all in zip(det.parameters(), together.parameters(), strict=True):
                p_one.copy_(p_all[r : r + 1])
    retrain(
        together,
        feats,
        y,
        epochs=3,
        batch_size=32,
        lr=1e-2,
        generator=torch.Generator().manual_seed(2),
    )
    for r, det in enumerate(alone):
        retrain(
            det,
            feats[r : r + 1],
            y,
            epochs=3,
            batch_size=32,
            lr=1e-2,
            generator=torch.Generator().manual_seed(2),
        )
        for p_one, p_all in zip(det.parameters(), together.parameters(), strict=True):
            torch.testing.assert_close(p_one[0], p_all[r], rtol=1e-4, atol=1e-5)


def test_from_detector_reproduces_the_trained_detector():
    det = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    feats = torch.randn(2, 50, 5)
    batched = BatchedDetector.from_detector(det, 2)
    torch.testing.assert_close(batched(feats), det(feats))
    acc = batched_accuracy(batched, feats, det(feats[0]).argmax(1))
    assert acc[0] == 1.0
