"""`blend`: a transfer strategy's model and a model trained from scratch on the same examples,
their predictions mixed as a weighted geometric mean of probabilities.

Pretrained features see what the pretraining data showed; images that look unlike it (grey
clothing, handwriting, X-rays, surface defects) also carry cues that only a network trained on
them picks up. The from-scratch part is the fit's no-transfer baseline (conv4 from random
initialisation, evaluate/baseline.py): weak alone with few examples, but wrong on other images
than the transferred model. `weight` is the scratch model's share: DEFAULT_WEIGHT, or none at
all when cross-validation on the examples finds the transferred model alone significantly more
accurate than the mix (a scratch model that only adds noise, as it may on photos close to
ImageNet's). Images only: for text the TF-IDF baseline added at most 0.3 points on CLINC150 validation."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from quickadapt.errors import BadInput, option
from quickadapt.model import BlendedModel, mix_log_proba
from quickadapt.transfer.base import Strategy
from quickadapt.settings import Settings, fraction

# chosen once on Fashion-MNIST validation (bench/image_fewshot.py --split val --methods blend):
# of 0.1, 0.2, 0.25 and 0.3, 0.2 was the best (at K = 5 tied) at K = 5, 10 and 20; at K = 1 the
# mix lost 1.7 points there. Choosing the weight per task by cross-validation was worse (it
# picked 0.3 to 0.5: 80.6 % against 82.0 % at K = 10), so cross-validation only decides
# whether to blend at all
DEFAULT_WEIGHT = 0.2
FOLDS = 3


@dataclass(frozen=True)
class BlendConfig(Settings):
    base: str = "probe"  # the transfer strategy whose model is blended; base.KEY=value sets its settings
    weight: float | str = fraction("auto")  # the from-scratch model's share of the mixed log-probabilities; auto: see above

    def __post_init__(self):
        super().__post_init__()  # a number in [0, 1]
        if isinstance(self.weight, bool) or isinstance(self.weight, str) and self.weight != "auto":
            raise ValueError(f"weight must be auto or a number from 0 to 1, got {self.weight!r}")


class Blend(Strategy):
    name = "blend"
    Config = BlendConfig
    modalities = ("image",)  # the model trained from scratch is conv4

    def __init__(self, **params):
        # `base.KEY=value` is a setting of the base strategy (base.epochs=2 for base=finetune)
        self.base_params = {k[len("base."):]: params.pop(k) for k in list(params) if k.startswith("base.")}
        super().__init__(**params)
        from quickadapt.transfer import STRATEGIES  # the registry imports this module

        if self.cfg.base == self.name:
            raise BadInput("setting 'base' for strategy 'blend' must name another strategy")
        base = STRATEGIES.get(self.cfg.base)
        if base.needs_source:
            raise BadInput(f"setting 'base' for strategy 'blend': {self.cfg.base!r} needs {option('source')}; blend takes one dataset")
        base(**self.base_params)  # its settings are checked now, by its own names and ranges
        # a tuning base changes the encoder in place, so cross-validation must copy it per fold
        self.tunes_encoder = base.tunes_encoder

    def params(self) -> dict:
        return {**super().params(), **{f"base.{k}": v for k, v in self.base_params.items()}}

    def instead(self) -> str:
        return f" (use {self.cfg.base!r} alone)"

    def fit(self, encoder, data, ctx):
        self.check_modality(data)  # as adapt() checks it, for a strategy fitted directly
        if self.cfg.weight == "auto":
            w, how = self.choose_weight(encoder, data, ctx)
        else:
            w, how = float(self.cfg.weight), {"by": "setting"}
        transferred, scratch = self.fit_parts(encoder, data, ctx)
        model = BlendedModel([transferred, scratch], [1.0 - w, w], strategy=self.name, strategy_params=self.params())
        model.info["blend"] = {"weight": w, **how}
        return model

    def fit_parts(self, encoder, data, ctx):
        from quickadapt.evaluate.baseline import fit_baseline  # evaluate builds on transfer
        from quickadapt.transfer import create_strategy

        return (create_strategy(self.cfg.base, **self.base_params).fit(encoder, data, ctx),
                fit_baseline(data, seed=ctx.seed, device=ctx.device))

    def choose_weight(self, encoder, data, ctx) -> tuple[float, dict]:
        """(weight, how it was chosen): DEFAULT_WEIGHT, unless the transferred model alone is
        significantly more accurate out of fold than the mix (then 0); DEFAULT_WEIGHT also when
        the examples allow no folds."""
        from quickadapt.evaluate.cv import SIGNIFICANCE, distinct_examples, folds, mcnemar_p, one_per_example

        ids = distinct_examples(data)  # once: each call hashes every image file
        split = folds(data, FOLDS, ctx.seed, ids)
        if split is None:
            return DEFAULT_WEIGHT, {"by": "default (too few examples to cross-validate)"}
        scored, pairs = split
        quiet = type(ctx)(device=ctx.device, seed=ctx.seed, source=ctx.source, progress=False)
        logs = np.zeros((2, len(scored), len(data.classes)))
        for train_idx, test_pos in pairs:
            enc = copy.deepcopy(encoder) if self.tunes_encoder else encoder
            parts = self.fit_parts(enc, data.subset(train_idx), quiet)
            held_out = data.subset(scored[test_pos]).inputs
            for i, part in enumerate(parts):
                assert part.classes["main"] == data.classes  # every class is in every training fold
                logs[i, test_pos] = np.log(np.clip(part.predict_proba(held_out), 1e-12, None))
        # copies are held out together and answered alike: each distinct example counts once
        keep = one_per_example(ids, scored)
        logs, truth = logs[:, keep], np.searchsorted(data.classes, data.labels[scored[keep]])

        blend_right = mix_log_proba(logs, (1 - DEFAULT_WEIGHT, DEFAULT_WEIGHT)).argmax(1) == truth
        alone_right = logs[0].argmax(1) == truth
        # the mix is the better bet unless the transferred model alone is significantly better
        p = mcnemar_p(alone_right, blend_right)
        how = {"by": f"{len(pairs)}-fold cross-validation", "cv_accuracy_blend": float(blend_right.mean()),
               "cv_accuracy_transferred": float(alone_right.mean()),
               "cv_accuracy_scratch": float(np.mean(logs[1].argmax(1) == truth)), "p_transferred_better": float(p)}
        return (0.0 if p < SIGNIFICANCE else DEFAULT_WEIGHT), how
