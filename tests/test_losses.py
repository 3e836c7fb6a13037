"""The soft-target loss against hand computations on fixed logits."""

from __future__ import annotations

import math

import pytest
import torch

from bertcompress.distill.losses import SoftTargetLoss

S = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
T_LOGITS = torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, -2.0]])
Y = torch.tensor([0, 2])


def _softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [x / sum(e) for x in e]


def _hand_kl(t):
    total = 0.0
    for s_row, t_row in zip(S.tolist(), T_LOGITS.tolist(), strict=True):
        p_t, p_s = _softmax(t_row, t), _softmax(s_row, t)
        total += sum(a * math.log(a / b) for a, b in zip(p_t, p_s, strict=True))
    return total / len(S)


def _hand_ce():
    total = 0.0
    for row, y in zip(S.tolist(), Y.tolist(), strict=True):
        total += -math.log(_softmax(row, 1.0)[y])
    return total / len(S)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_kl_loss_matches_hand_computation(temperature, alpha):
    total, kd, ce = SoftTargetLoss("kl", temperature, alpha)(S, T_LOGITS, Y)
    hand_kd = temperature**2 * _hand_kl(temperature)
    assert kd.item() == pytest.approx(hand_kd, rel=1e-5)
    expected_ce = _hand_ce() if alpha < 1 else 0.0
    assert ce.item() == pytest.approx(expected_ce, rel=1e-5)
    assert total.item() == pytest.approx(alpha * hand_kd + (1 - alpha) * expected_ce, rel=1e-5)


def test_t_squared_scaling_is_applied():
    # with T=4 the raw KL shrinks; the T^2 factor is what the loss reports
    _, kd4, _ = SoftTargetLoss("kl", 4.0, 1.0)(S, T_LOGITS, Y)
    assert kd4.item() == pytest.approx(16 * _hand_kl(4.0), rel=1e-5)
    assert kd4.item() != pytest.approx(_hand_kl(4.0), rel=1e-2)


def test_alpha_zero_is_plain_cross_entropy():
    total, _, ce = SoftTargetLoss("kl", 2.0, 0.0)(S, T_LOGITS, Y)
    assert total.item() == pytest.approx(torch.nn.functional.cross_entropy(S, Y).item(), rel=1e-6)


def test_mse_mode_is_mse_between_raw_logits():
    total, kd, ce = SoftTargetLoss("mse", 5.0, 0.5)(S, T_LOGITS, Y)
    hand = (
        sum(
            (a - b) ** 2
            for ra, rb in zip(S.tolist(), T_LOGITS.tolist(), strict=True)
            for a, b in zip(ra, rb, strict=True)
        )
        / S.numel()
    )
    assert kd.item() == pytest.approx(hand, rel=1e-6)  # temperature plays no part
    assert total.item() == pytest.approx(0.5 * hand + 0.5 * _hand_ce(), rel=1e-5)


def test_unlabelled_examples_skip_the_ce_term():
    labels = torch.tensor([0, -100])
    _, _, ce = SoftTargetLoss("kl", 2.0, 0.5)(S, T_LOGITS, labels)
    assert ce.item() == pytest.approx(-math.log(_softmax(S[0].tolist(), 1.0)[0]), rel=1e-6)
    _, _, ce_none = SoftTargetLoss("kl", 2.0, 0.5)(S, T_LOGITS, torch.tensor([-100, -100]))
    assert ce_none.item() == 0.0


def test_no_teacher_means_hard_labels_only():
    total, kd, ce = SoftTargetLoss("kl", 2.0, 0.5)(S, None, Y)
    assert kd.item() == 0.0 and total.item() == pytest.approx(_hand_ce(), rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature T must be > 0"),
        ({"temperature": -1.0}, "temperature T must be > 0"),
        ({"alpha": 1.5}, r"alpha must lie in \[0, 1\]"),
        ({"alpha": -0.1}, r"alpha must lie in \[0, 1\]"),
        ({"mode": "cosine"}, "expected 'kl' or 'mse'"),
    ],
)
def test_bad_loss_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftTargetLoss(**kwargs)
