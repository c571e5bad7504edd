"""`multitask`: one shared encoder, one head per task, trained together on the summed loss
CE(target) + lam * CE(source). The result keeps both heads (kind "multitask"): the target is task
"main", the source task "source"; predict either with `model.predict(inputs, task=...)`."""
from __future__ import annotations

from dataclasses import dataclass

from quickadapt.model import AdaptedModel
from quickadapt.transfer.finetune import Finetune, FinetuneConfig
from quickadapt.transfer.joint import fit_two_tasks, require_source


@dataclass(frozen=True)
class MultitaskConfig(FinetuneConfig):
    lam: float = 1.0  # weight of the source task's loss; both tasks matter equally by default


class Multitask(Finetune):
    name = "multitask"
    Config = MultitaskConfig
    needs_source = True

    def fit(self, encoder, data, ctx):
        source = require_source(self, data, ctx)
        encoder, heads, classes, summary = fit_two_tasks(
            self, encoder, data, source, ctx, lam=self.cfg.lam, share_head=False
        )
        model = AdaptedModel(
            encoder, heads, classes, encoder_tuned=True, strategy=self.name, strategy_params=self.params()
        )
        model.info["train"] = {**summary, "source_examples": len(source)}
        return model


__all__ = ["Multitask", "MultitaskConfig"]
