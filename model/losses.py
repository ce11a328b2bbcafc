"""Training losses: the paper's CE + KD + weight regularisation and the
reference code's variants."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .layers import weight_regularization

LOSSES = ("paper", "kd", "kd_re", "ce")


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float = 1.0):
    """KD as soft cross-entropy at temperature t (the reference code uses t = 1)."""
    p = F.softmax(teacher_logits / t, dim=-1)
    return -(p * F.log_softmax(student_logits / t, dim=-1)).sum(-1).mean() * t * t


def loss_weights(kind: str, epoch: int, epochs: int, has_teacher: bool, lam: float = 0.8, beta: float = 0.1):
    """(w_ce, w_kd, w_re) for an epoch.

    paper: (1 - lam - beta) CE + lam KD + beta L_re, beta only in the last 10 %
           of epochs (before that beta = 0, so CE takes 1 - lam);
    kd:    KD only (reference default);  kd_re: 0.9 KD + 0.1 L_re all along;
    ce:    CE only.  Without a teacher, KD weight moves to CE.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss '{kind}': choose from {', '.join(LOSSES)}")
    if kind == "paper":
        b = beta if epoch >= epochs - max(1, round(0.1 * epochs)) else 0.0
        w = (1 - lam - b, lam, b)
    elif kind == "kd":
        w = (0.0, 1.0, 0.0)
    elif kind == "kd_re":
        w = (0.0, 0.9, 0.1)
    else:
        w = (1.0, 0.0, 0.0)
    if not has_teacher:
        w = (w[0] + w[1], 0.0, w[2])
    return w


def compute_loss(model, logits, labels, teacher_logits, weights):
    w_ce, w_kd, w_re = weights
    terms = {}
    total = logits.new_zeros(())
    if w_ce:
        terms["ce"] = F.cross_entropy(logits, labels)
        total = total + w_ce * terms["ce"]
    if w_kd:
        terms["kd"] = soft_cross_entropy(logits, teacher_logits)
        total = total + w_kd * terms["kd"]
    if w_re:
        terms["re"] = weight_regularization(model)
        total = total + w_re * terms["re"]
    return total, terms
