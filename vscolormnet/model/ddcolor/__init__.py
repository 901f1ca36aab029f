"""DDColor, the automatic colourizer that makes references (see ``network.DDColor``)."""
from .names import DEFAULT_MODEL, accepted_names, resolve_model
from .network import DEFAULT_INPUT_SIZE, SIZE_MULTIPLE, DDColor, check_input_size

__all__ = ["DDColor", "DEFAULT_INPUT_SIZE", "DEFAULT_MODEL", "SIZE_MULTIPLE", "accepted_names", "check_input_size",
           "resolve_model"]
