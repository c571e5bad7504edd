"""`--set key=value`: each value is read as its setting's type and range, so a typo or a value
that makes no sense is refused with the setting's name before any work."""
import dataclasses
import re
import typing

import pytest

from quickadapt.domain.meda import MEDAConfig
from quickadapt.errors import BadInput
from quickadapt.settings import build_config, parse_set_options
from quickadapt.transfer.blend import BlendConfig
from quickadapt.transfer.freeze import FreezeConfig
from quickadapt.transfer.lora import LoRAConfig
from quickadapt.transfer.probe import ProbeConfig


def settings(cls, *pairs):
    return build_config(cls, parse_set_options(list(pairs)), "test")


@pytest.mark.parametrize("cls, pair, fragment", [
    (FreezeConfig, "weight_decay=-1", "at least 0"),
    (FreezeConfig, "k=-2", "at least -1"),
    (FreezeConfig, "epochs=0", "at least 1"),
    (FreezeConfig, "epochs=2.5", "an integer"),
    (FreezeConfig, "epochs=abc", "an integer"),
    (FreezeConfig, "time_budget=-5", "at least 0"),
    (FreezeConfig, "augment=maybe", "true or false"),
    (FreezeConfig, "lr=1e400", "finite"),
    (FreezeConfig, "lr=NaN", "finite"),
    (LoRAConfig, "dropout=1", "(excluded)"),
    (ProbeConfig, "C=0", "between 1e-06 and 1e.06"),
    (LoRAConfig, "r=0", "at least 1"),
    (BlendConfig, "weight=2", "between 0 and 1"),
    (BlendConfig, "weight=[1]", "a number or a word"),
    (MEDAConfig, "mu=1.5", "between -1 and 1"),
])
def test_bad_values_are_refused_by_name(cls, pair, fragment):
    with pytest.raises(BadInput, match=rf"'{pair.split('=')[0]}'.*{fragment}" if "(" not in fragment else "excluded"):
        settings(cls, pair)


def test_a_setting_given_twice_with_two_values_is_refused():
    with pytest.raises(BadInput, match="C is given twice, as 1 and 2"):
        parse_set_options(["C=1", "C=2"])
    assert parse_set_options(["C=1", " C=1"]) == {"C": 1}  # a repeat that agrees is harmless


def test_good_values_take_the_fields_types():
    cfg = settings(FreezeConfig, "k=-1", "epochs=3.0", "augment=yes", "lr=1e-3", "time_budget=0")
    assert cfg.k == -1 and cfg.epochs == 3 and isinstance(cfg.epochs, int) and cfg.augment is True
    assert cfg.lr == 1e-3 and settings(FreezeConfig, "augment=off").augment is False
    assert settings(BlendConfig, "weight=auto").weight == "auto"
    assert settings(BlendConfig, "weight=0.3").weight == 0.3
    assert settings(MEDAConfig, "mu=-1").mu == -1.0
    assert settings(LoRAConfig, "dropout=0").dropout == 0.0


def test_numpy_numbers_are_read_as_python_ones():
    """A grid search over np.arange or np.logspace gives numpy scalars: epochs=np.int64(3) was
    refused as "must be an integer"."""
    import numpy as np

    cfg = build_config(FreezeConfig, {"epochs": np.int64(3), "lr": np.float32(0.5), "augment": np.bool_(True)}, "freeze")
    assert cfg.epochs == 3 and type(cfg.epochs) is int and type(cfg.lr) is float and cfg.augment is True
    with pytest.raises(BadInput, match="must be an integer, got"):
        build_config(FreezeConfig, {"epochs": np.float64(2.5)}, "freeze")


def every_config():
    """Each registered method's settings class, and those of the training stages."""
    from quickadapt.domain import DOMAIN_METHODS
    from quickadapt.meta import META
    from quickadapt.meta.finetune import FinetuneConfig as EpisodeFinetuneConfig
    from quickadapt.meta.pretrain import PretrainConfig
    from quickadapt.meta.train import MetaTrainConfig
    from quickadapt.transfer import STRATEGIES

    classes = [r.get(n).Config for r in (STRATEGIES, DOMAIN_METHODS, META) for n in r.names()]
    return sorted({*classes, EpisodeFinetuneConfig, PretrainConfig, MetaTrainConfig}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", every_config(), ids=lambda c: c.__name__)
def test_configs_built_in_python_check_their_ranges_too(cls):
    cls()  # every default lies within its field's range
    hints = typing.get_type_hints(cls)
    numbers = [f for f in dataclasses.fields(cls) if {int, float} & set(typing.get_args(hints[f.name]) or [hints[f.name]])]
    assert numbers, cls
    for f in numbers:
        lo = f.metadata.get("range", (0,))[0]
        if lo is None:
            continue
        with pytest.raises(ValueError, match=rf"^{f.name} must be"):
            cls(**{f.name: lo - 1})  # below every field's lower bound
        with pytest.raises(ValueError, match=rf"^{f.name} must be a finite number"):
            cls(**{f.name: float("nan")})


@pytest.mark.parametrize("name, settings, fragment", [
    ("conv4", {"channels": 0}, "'channels' for encoder 'conv4' must be at least 1"),
    ("mlp", {"in_dim": 3, "hidden": 0}, "hidden must be >= 1"),
    ("mlp", {"in_dim": 3, "dropout": 1.0}, "^bad setting for encoder 'mlp': dropout must be in \\[0, 1\\), got 1.0$"),  # that one alone
    ("mlp", {"in_dim": 3, "depth": "abc"}, "setting 'depth' for encoder 'mlp' must be an integer, got 'abc'"),
    ("minilm", {"max_length": 0}, "max_length counts tokens"),
])
def test_bad_encoder_settings_are_bad_input(name, settings, fragment):
    from quickadapt.encoders import create_encoder

    with pytest.raises(BadInput, match=fragment):
        create_encoder(name, **settings)


def test_unknown_encoder_setting_is_named():
    from quickadapt.encoders import create_encoder

    with pytest.raises(BadInput, match="unknown setting 'bogus' for encoder 'conv4'; valid settings are channels, grey"):
        create_encoder("conv4", bogus=3)


def test_encoder_settings_are_read_by_their_type_as_strategy_settings_are():
    from quickadapt.encoders import create_encoder

    assert create_encoder("minilm", normalize="no").settings["normalize"] is False
    assert create_encoder("conv4", grey="off").settings["grey"] is False
    assert create_encoder("minilm", max_length=64.0).settings["max_length"] == 64
    for name, settings, fragment in [
        ("minilm", {"layers": 2.7}, "setting 'layers' for encoder 'minilm' must be an integer, got 2.7"),
        ("minilm", {"normalize": "maybe"}, "setting 'normalize' for encoder 'minilm' must be true or false"),
        ("minilm", {"max_length": 1}, "max_length counts tokens: from 2 to 512, got 1"),  # 1 truncated nothing
        ("minilm", {"max_length": 100000}, "max_length counts tokens: from 2 to 512"),  # long texts overflowed
        ("efficientnet-lite0", {"size": 28.9}, "setting 'size' for encoder 'efficientnet-lite0' must be an integer"),
        ("resnet12", {"widths": [0, 16, 32, 64]}, "'widths' for encoder 'resnet12' must be a list of channel counts"),
        ("resnet12", {"widths": []}, "'widths' for encoder 'resnet12' must be a list of channel counts"),
    ]:
        with pytest.raises(BadInput, match=re.escape(fragment)):
            create_encoder(name, **settings)
