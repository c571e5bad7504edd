"""NCE, negative conditional entropy (Tran et al. 2019, "Transferability and Hardness of
Supervised Classification Tasks", ICCV).

The source classifier's hard labels z (argmax of its probabilities) on the user's examples and
their target labels y give an empirical joint P(y, z); NCE = -H(Y | Z) = sum P(y, z) log P(y | z).
It is 0 when the source label determines the target one and falls to -H(Y) when it says nothing
about it; renaming source or target classes does not change it. Higher is better."""
from __future__ import annotations

import numpy as np

from quickadapt.errors import BadInput
from quickadapt.select.base import checked, label_codes, transferability_score


@transferability_score("nce", reads="source")
def nce(source_proba, labels) -> float:
    """NCE of the source classes argmax(`source_proba`) (n, Z) for the target `labels`; a 1-D
    array is taken as the source labels themselves. Higher is better, at most 0."""
    given = np.asarray(source_proba)
    if given.ndim == 1 and len(given) != len(np.asarray(labels)):
        raise BadInput(f"source labels must be one per example: got {len(given)} source labels for "
                       f"{len(np.asarray(labels))} labels")
    if given.ndim == 1:
        z = label_codes(given, "source label")
    else:
        z = checked(given, labels, "source probabilities")[0].argmax(axis=1)
    _, codes = checked(np.zeros((len(z), 1)), labels)
    _, z = np.unique(z, return_inverse=True)
    joint = np.zeros((codes.max() + 1, z.max() + 1))
    np.add.at(joint, (codes, z.reshape(-1)), 1.0 / len(codes))
    conditional = joint / joint.sum(axis=0, keepdims=True)
    present = joint > 0
    return float((joint[present] * np.log(conditional[present])).sum()) + 0.0  # not -0.0
