"""Where the DDColor weights come from and where they live: the four hub models, their files, the look-up.

Why a table: ``download ddcolor-large`` must name one hub repository, one file in it and one local
file, and ``colorize-image`` without ``--weights`` must find that file again. The repositories
(``PyTorchModelHubMixin`` uploads) hold ``pytorch_model.bin``, a torch zip of the bare state_dict;
a ``model.safetensors`` is preferred if one appears. Local files are named after the repository
(``ddcolor_modelscope.bin``, …): four names, one per model, traceable to their source.

``hub_file()`` asks the hub (``huggingface_hub``: ``HfApi.model_info(files_metadata=True)``) for
the file's size and LFS SHA-256 at the repository's current commit, and the resolve URL pinned
to that commit, so the bytes fetched are the bytes the hash describes. The look-up is separate
from the transport (``weights.download``), so each is tested against real local parts.
Nothing here runs at colourising time: a missing file is one line naming the download command.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..model.ddcolor.names import HUB_MODELS, resolve_model
from ..util.errors import CheckpointError, DownloadError, UserError
from ..util.offline import HF_OFFLINE_VAR, offline_by_user
from .checkpoint import ENV_WEIGHTS_DIR, default_weights_problem, weights_dir

HUB_FILES = ("model.safetensors", "pytorch_model.bin")      # preference order
CODE_LICENCE = "Apache-2.0"
CODE_URL = "https://github.com/piddnad/DDColor"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Variant:
    """One downloadable DDColor model: the name ``download`` takes, its hub repository and architecture."""

    name: str           # ddcolor-large, ddcolor-tiny, ddcolor-artistic, ddcolor-paper
    repo: str           # piddnad/ddcolor_modelscope, …
    model: str          # the architecture's project name (ddcolor-large / ddcolor-tiny)

    @property
    def hub_name(self) -> str:
        return self.repo.split("/", 1)[1]

    @property
    def card_url(self) -> str:
        return f"https://huggingface.co/{self.repo}"

    def local_name(self, hub_filename: str = "pytorch_model.bin") -> str:
        """The file name in the weights folder: the repository's name, the hub file's suffix."""
        return self.hub_name + Path(hub_filename).suffix


def _variants() -> dict[str, Variant]:
    by_repo = {repo: (hub, model) for hub, (repo, model) in HUB_MODELS.items()}
    names = {"piddnad/ddcolor_modelscope": "ddcolor-large", "piddnad/ddcolor_paper_tiny": "ddcolor-tiny",
             "piddnad/ddcolor_artistic": "ddcolor-artistic", "piddnad/ddcolor_paper": "ddcolor-paper"}
    return {name: Variant(name, repo, by_repo[repo][1]) for repo, name in names.items()}


VARIANTS = _variants()
DEFAULT_VARIANT = "ddcolor-large"


def variant_names() -> tuple[str, ...]:
    """The names ``download`` and ``default_ddcolor_weights`` accept: ours, then the hub's."""
    return (*VARIANTS, *(v.hub_name for v in VARIANTS.values()))


def find_variant(name: str) -> Variant | None:
    """The variant of ``name`` (ours or the hub model name, any case), or None."""
    key = str(name).strip().lower()
    if key in VARIANTS:
        return VARIANTS[key]
    return next((v for v in VARIANTS.values() if v.hub_name == key), None)


def variant_of(name: str, param: str = "MODEL") -> Variant:
    """``find_variant`` or a one-line ``UserError`` naming ``param`` and the accepted names."""
    found = find_variant(name)
    if found is None:
        raise UserError.bad(param, name, "one of " + ", ".join(variant_names()))
    return found


def weights_variant(model: str) -> Variant:
    """The variant whose file a ``--model`` name means: a download/hub name, else the architecture's default
    (``ddcolor-large`` → modelscope, ``ddcolor-tiny`` → paper_tiny)."""
    return find_variant(model) or VARIANTS[resolve_model(model)]


def default_ddcolor_weights(model: str = DEFAULT_VARIANT, hub_filename: str | None = None) -> Path:
    """Where ``download <model>`` puts the weights: the first hub file name that is there, else the default."""
    variant = weights_variant(model)
    folder = weights_dir()
    names = [variant.local_name(hub_filename)] if hub_filename else [variant.local_name(f) for f in HUB_FILES]
    return next((folder / n for n in names if (folder / n).is_file()), folder / variant.local_name())


def resolve_ddcolor_weights(weights: str | os.PathLike | None, model: str, param: str = "--weights") -> Path:
    """The checkpoint to use: ``weights`` (the ``param`` flag) or the downloaded file of ``model``; a missing
    file is one line naming ``python -m vscolormnet download <model>``. Never downloads."""
    variant = weights_variant(model)
    how = (f"run `python -m vscolormnet download {variant.name}` to fetch the {variant.name} weights from "
           f"{variant.card_url} (into {weights_dir()}; set {ENV_WEIGHTS_DIR} to choose another folder)")
    if weights is None or str(weights) == "":
        if why := default_weights_problem():
            raise CheckpointError(f"the default weights folder {weights_dir()} is not yours alone: {why}; make it "
                                  f"yours (chmod 700), set {ENV_WEIGHTS_DIR} or pass {param}",
                                  param=param, value=None, accepted="a DDColor checkpoint file")
        path = default_ddcolor_weights(variant.name)
        if not path.is_file():
            raise CheckpointError(f"the {variant.name} weights are not downloaded ({path} is missing); {how}",
                                  param=param, value=None, accepted="a DDColor checkpoint file")
        return path
    path = Path(weights).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{param} {path} is a folder, not a checkpoint file (.pt, .pth, .bin, .safetensors)",
                              param=param, value=str(path), accepted="a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{param} {path} not found; {how}", param=param, value=str(path),
                              accepted="an existing checkpoint file")
    return path


# ---------------------------------------------------------------- the hub look-up
@dataclass(frozen=True)
class HubFile:
    """One file on the hub, as ``model_info`` describes it at one commit."""

    variant: Variant
    revision: str       # the commit the URL is pinned to
    filename: str       # pytorch_model.bin / model.safetensors
    url: str            # {endpoint}/{repo}/resolve/{revision}/{filename}
    sha256: str         # the LFS object's SHA-256
    size: int
    licence: str | None  # the model card's ``license:``, if it has one

    def licence_line(self) -> str:
        """What to tell the user about the terms, code and weights."""
        weights = (f"the model card says licence: {self.licence}" if self.licence
                   else "the model card does not state a licence")
        return (f"DDColor code {CODE_LICENCE} ({CODE_URL}); the {self.variant.name} weights: {weights} "
                f"(see the model card {self.variant.card_url})")


def default_endpoint() -> str:
    """The hub's address: ``$HF_ENDPOINT`` (as huggingface_hub reads it), else huggingface.co."""
    from huggingface_hub import constants
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT.rstrip("/")


@contextlib.contextmanager
def hub_online():
    """Lift our own ``HF_HUB_OFFLINE`` default for the block (``download`` goes online on purpose); a user's
    own setting is obeyed: one line saying so."""
    if offline_by_user():
        raise DownloadError(f"{HF_OFFLINE_VAR}={os.environ.get(HF_OFFLINE_VAR)} is set: the hub is not asked "
                            f"(unset it to download, e.g. `env -u {HF_OFFLINE_VAR} python -m vscolormnet download …`)")
    from huggingface_hub import constants
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _licence(info) -> str | None:
    card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
    value = card.get("license") if card is not None and hasattr(card, "get") else None
    if value:
        return str(value)
    tags = getattr(info, "tags", None) or []
    return next((t.split(":", 1)[1] for t in tags if isinstance(t, str) and t.startswith("license:")), None)


def _transport_error(e: Exception) -> bool:
    """A connection, DNS, TLS or timeout error of the HTTP client huggingface_hub uses (httpx/httpx2 in 1.x/2.x,
    requests before): they share no base class with the standard library's."""
    root = type(e).__module__.split(".")[0]
    return isinstance(e, OSError) or root in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


def hub_file(variant: Variant | str, *, endpoint: str | None = None, revision: str | None = None,
             timeout: float = 60.0) -> HubFile:
    """Ask the hub for ``variant``'s weights file: commit, name, size, LFS SHA-256, licence; ``DownloadError``
    (one line) if the hub cannot be reached or describes no usable file."""
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled  # (also there before 0.24)
    variant = variant if isinstance(variant, Variant) else variant_of(variant)
    endpoint = (endpoint or default_endpoint()).rstrip("/")
    where = f"{endpoint}/{variant.repo}"
    with hub_online():
        try:
            info = HfApi(endpoint=endpoint, library_name="vscolormnet").model_info(
                variant.repo, revision=revision, files_metadata=True, timeout=timeout)
        except HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            raise DownloadError(f"the hub answered HTTP {status} for {where}: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        except OfflineModeIsEnabled as e:  # pragma: no cover - hub_online lifted it; kept for other versions
            raise DownloadError(f"cannot ask the hub: {e}") from None
        except Exception as e:  # noqa: BLE001 - filtered: only the HTTP client's transport errors become one line
            if not _transport_error(e):
                raise
            detail = str(e).splitlines()[0] if str(e) else ""
            raise DownloadError(f"cannot reach the hub at {endpoint} for {variant.repo}: {type(e).__name__}"
                                + (f": {detail}" if detail else "")) from None
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    name = next((f for f in HUB_FILES if f in siblings), None)
    if name is None:
        raise DownloadError(f"{where} holds none of {', '.join(HUB_FILES)} (files: "
                            f"{', '.join(sorted(siblings)) or 'none listed'})")
    lfs = siblings[name].lfs
    sha = str(getattr(lfs, "sha256", None) or (lfs or {}).get("sha256", "")).lower() if lfs is not None else ""
    size = getattr(lfs, "size", None) if lfs is not None else None
    if not _HEX64.match(sha) or not isinstance(size, int) or size <= 0:
        raise DownloadError(f"the hub gives no LFS SHA-256 and size for {where}/{name}; refusing a file that cannot "
                            f"be checked")
    commit = info.sha or revision or "main"
    url = hf_hub_url(variant.repo, name, revision=commit, endpoint=endpoint)
    return HubFile(variant, commit, name, url, sha, int(size), _licence(info))
