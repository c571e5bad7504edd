"""Meta-learners by name: `create_meta("maml", encoder, inner_steps=1)`; and in one call
`run_meta_train("builtin:omniglot", method="protonet", n_way=5, k_shot=1, out="meta/")` and
`run_episodes("meta/", "builtin:omniglot", n_way=5, k_shot=1)` (docs/meta.md).

Each method is one file; registered explicitly below. `quickadapt.meta.train.meta_train` runs
the episodic training loop; `quickadapt.meta.io` saves and loads meta-trained encoders."""
from __future__ import annotations

from quickadapt.errors import BadInput
from quickadapt.meta.anil import ANIL
from quickadapt.meta.base import MetaLearner
from quickadapt.meta.fomaml import FOMAML
from quickadapt.meta.maml import MAML
from quickadapt.meta.matchingnet import MatchingNet
from quickadapt.meta.metasgd import MetaSGD
from quickadapt.meta.protonet import ProtoNet
from quickadapt.meta.reptile import Reptile
from quickadapt.registry import Registry
from quickadapt.settings import build_config

META: Registry[type[MetaLearner]] = Registry("meta-learning method")
for _cls in (ProtoNet, MatchingNet, MAML, FOMAML, ANIL, MetaSGD, Reptile):
    META.register(_cls.name)(_cls)


def create_meta(name: str, encoder, **settings) -> MetaLearner:
    """Meta-learner `name` around `encoder`, its config built from `settings` (validated)."""
    cls = META.get(name)
    cfg = build_config(cls.Config, settings, f"method {name!r}")
    return cls(encoder, cfg)


def list_methods() -> list[str]:
    return META.names()


# the one-call entry points (what `quickadapt meta-train` and `quickadapt episodes` run); imported
# last because they build learners through create_meta above
from quickadapt.meta.run import run_episodes, run_meta_train  # noqa: E402

__all__ = ["META", "MetaLearner", "create_meta", "list_methods", "run_meta_train", "run_episodes", "BadInput"]
