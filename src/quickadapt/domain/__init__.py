"""Unsupervised domain adaptation: a labelled source, an unlabelled shifted target.

`adapt_domain(source, target, method="auto")` returns an ordinary AdaptedModel; methods by name
from `DOMAIN_METHODS` (`list_methods()`), one file each, registered explicitly below."""
from __future__ import annotations

from quickadapt.domain.base import DeepMethod, DomainContext, DomainMethod
from quickadapt.domain.cdan import CDAN, CDANE
from quickadapt.domain.centroids import Centroids
from quickadapt.domain.coral import CORAL
from quickadapt.domain.dann import DANN
from quickadapt.domain.mcc import MCC
from quickadapt.domain.meda import MEDA
from quickadapt.domain.mmd import MMD
from quickadapt.domain.reweight import Reweight
from quickadapt.domain.self_training import SelfTraining
from quickadapt.domain.source_only import SourceOnly
from quickadapt.registry import Registry

DOMAIN_METHODS: Registry[type] = Registry("domain adaptation method")
for _cls in (SourceOnly, DANN, MMD, CORAL, CDAN, CDANE, MCC, SelfTraining, Reweight, Centroids, MEDA):
    DOMAIN_METHODS.register(_cls.name)(_cls)


def create_method(name: str, **params) -> DomainMethod:
    """Method `name` with its settings validated (BadInput names a bad one)."""
    return DOMAIN_METHODS.get(name)(**params)


def list_methods() -> list[str]:
    return DOMAIN_METHODS.names()


from quickadapt.domain.adapt import adapt_domain  # noqa: E402  (needs the registry above)

__all__ = ["DOMAIN_METHODS", "DomainContext", "DomainMethod", "DeepMethod", "adapt_domain", "create_method", "list_methods"]
