"""`logistic`: multinomial logistic regression fitted in closed loop by scikit-learn (L-BFGS),
stored as a linear layer so prediction is one matmul and the weights save as safetensors."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from quickadapt.heads.linear import LinearHead


class LogisticHead(LinearHead):
    kind = "logistic"

    def __init__(self, embed_dim: int, n_classes: int, *, C: float = 10.0, max_iter: int = 2000):
        super().__init__(embed_dim, n_classes)
        self.C = float(C)
        self.max_iter = int(max_iter)

    def fit(self, features: np.ndarray, y: np.ndarray) -> "LogisticHead":
        """`y` holds class indices 0..n_classes-1; every class must occur."""
        # no feature scaling: sentence embeddings are unit-norm, image features are comparable in scale
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
        clf.fit(features, y)
        weight = np.zeros((self.fc.out_features, features.shape[1]), dtype=np.float32)
        bias = np.zeros(self.fc.out_features, dtype=np.float32)
        if len(clf.classes_) == 2:  # sklearn stores one row for two classes: logits (-z/2, z/2) give the same softmax
            weight[clf.classes_[1]] = clf.coef_[0] / 2
            weight[clf.classes_[0]] = -clf.coef_[0] / 2
            bias[clf.classes_[1]], bias[clf.classes_[0]] = clf.intercept_[0] / 2, -clf.intercept_[0] / 2
        else:
            weight[clf.classes_] = clf.coef_
            bias[clf.classes_] = clf.intercept_
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weight))
            self.fc.bias.copy_(torch.from_numpy(bias))
        return self

    def config(self) -> dict:
        return {**super().config(), "C": self.C, "max_iter": self.max_iter}
