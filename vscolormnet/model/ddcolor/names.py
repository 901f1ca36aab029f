"""The DDColor model names, in one place: what ``--model`` accepts and which architecture each means.

Why a table: users know the hub repositories' names (``ddcolor_modelscope``, ``ddcolor_paper_tiny``, …)
and the project's own (``ddcolor-large``, ``ddcolor-tiny``); both must lead to the same
architecture, and a new name is one line here. A name picks the architecture only; which trained
variant runs (modelscope, paper, artistic) is the weights file's business.
"""
from __future__ import annotations

ARCHITECTURES = {  # size → ConvNeXt depths and stage widths
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),       # ConvNeXt-T
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),   # ConvNeXt-L
}
MODEL_NAMES = {"ddcolor-large": "large", "ddcolor-tiny": "tiny"}   # project name → size
# The other trained variants by the names ``download`` gives them → their architecture's project name.
VARIANT_NAMES = {"ddcolor-artistic": "ddcolor-large", "ddcolor-paper": "ddcolor-large"}
DEFAULT_MODEL = "ddcolor-large"
# Hugging Face hub model name → (repository, project name); the repositories hold pytorch_model.bin
# and/or model.safetensors written by PyTorchModelHubMixin (keys without prefix).
HUB_MODELS = {
    "ddcolor_modelscope": ("piddnad/ddcolor_modelscope", "ddcolor-large"),
    "ddcolor_paper_tiny": ("piddnad/ddcolor_paper_tiny", "ddcolor-tiny"),
    "ddcolor_artistic": ("piddnad/ddcolor_artistic", "ddcolor-large"),
    "ddcolor_paper": ("piddnad/ddcolor_paper", "ddcolor-large"),
}


def accepted_names() -> tuple[str, ...]:
    """Every name ``resolve_model`` accepts, project names first."""
    return (*MODEL_NAMES, *VARIANT_NAMES, *HUB_MODELS)


def resolve_model(name: str) -> str:
    """The project name (``ddcolor-large``/``ddcolor-tiny``) of ``name`` (a project or hub model name,
    case-insensitive); ``ValueError`` listing the accepted names otherwise."""
    key = str(name).strip().lower()
    if key in MODEL_NAMES:
        return key
    if key in VARIANT_NAMES:
        return VARIANT_NAMES[key]
    if key in HUB_MODELS:
        return HUB_MODELS[key][1]
    raise ValueError(f"unknown DDColor model {name!r}; accepted: {', '.join(accepted_names())}")


def model_size(name: str) -> str:
    """``'tiny'`` or ``'large'`` for any accepted name (or for a size itself)."""
    if name in ARCHITECTURES:
        return name
    return MODEL_NAMES[resolve_model(name)]


def model_name(size: str) -> str:
    """The project name of a size (``'large'`` → ``'ddcolor-large'``)."""
    return next(n for n, s in MODEL_NAMES.items() if s == size)
