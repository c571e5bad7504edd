"""`logistic`: multinomial logistic regression on frozen features, stored as a linear layer so
prediction is one matmul and the weights save as safetensors.

Fitted with full-batch L-BFGS in torch on scikit-learn's objective (C * summed cross-entropy +
||W||^2 / 2, bias unpenalised): the same minimiser as `LogisticRegression(C=C)`, about ten
times faster than scikit-learn's solver for 150 classes, which keeps probe fits under a second."""
from __future__ import annotations

import numpy as np
import torch

from quickadapt.heads.linear import LinearHead


class LogisticHead(LinearHead):
    kind = "logistic"

    def __init__(self, embed_dim: int, n_classes: int, *, C: float = 10.0, max_iter: int = 100,
                 class_weight: str = "balanced"):
        super().__init__(embed_dim, n_classes)
        if class_weight not in ("balanced", "none"):
            raise ValueError(f"class_weight is 'balanced' or 'none', got {class_weight!r}")
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.class_weight = class_weight

    def fit(self, features: np.ndarray, y: np.ndarray) -> "LogisticHead":
        """`y` holds class indices 0..n_classes-1."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        t = torch.as_tensor(np.asarray(y), dtype=torch.long)
        w = torch.zeros(self.fc.out_features, x.shape[1], dtype=torch.float32, requires_grad=True)
        b = torch.zeros(self.fc.out_features, dtype=torch.float32, requires_grad=True)
        # dividing sklearn's objective by C * n keeps the loss O(1), which L-BFGS' tolerances expect
        l2 = 1.0 / (2.0 * self.C * len(x))
        weight = self._class_weights(t)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=1e-5,
                                tolerance_change=1e-7, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w.T + b, t, weight=weight) + l2 * (w * w).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            self.fc.weight.copy_(w.detach().float())
            self.fc.bias.copy_(b.detach().float())
        return self

    def _class_weights(self, t: torch.Tensor) -> torch.Tensor | None:
        """scikit-learn's class_weight="balanced", n / (k * count): each class weighs the same in
        the loss however many examples it has. The few examples of a new class beside many of the
        old are what a few-shot task looks like, and unweighted, one example against sixty was
        answered for 13 % of that class's inputs (prototypes: 100 %). None where every class has
        as many examples, where the weights are all 1: the same fit, to the last bit."""
        counts = torch.bincount(t, minlength=self.fc.out_features).float()
        present = counts[counts > 0]
        if self.class_weight == "none" or bool((present == present[0]).all()):
            return None
        return torch.where(counts > 0, len(t) / (len(present) * counts.clamp(min=1)), torch.zeros_like(counts))

    def config(self) -> dict:
        return {**super().config(), "C": self.C, "max_iter": self.max_iter, "class_weight": self.class_weight}
