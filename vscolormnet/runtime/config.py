"""Run-time parameters with the official test.py defaults."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class MemoryConfig:
    """Memory parameters (names and defaults as in the official ``test.py``).

    mem_every:              store a frame in memory every this many frames (γ).
    max_mid_term_frames:    working-memory size in frames (incl. one reference slot) that
                            triggers consolidation into long-term memory.
    min_mid_term_frames:    working-memory frames (incl. one reference slot) kept after it.
    num_prototypes:         long-term elements created per consolidation.
    max_long_term_elements: long-term capacity; the least used elements are evicted.
    top_k:                  memory elements each query pixel reads from.
    enable_long_term:       consolidate into long-term memory (else working memory grows).
    count_long_term_usage:  count usage in long-term memory (needed for eviction). None =
                            decide from the clip length like test.py does.
    """

    mem_every: int = 5
    max_mid_term_frames: int = 10
    min_mid_term_frames: int = 5
    num_prototypes: int = 128
    max_long_term_elements: int = 10000
    top_k: int = 30
    enable_long_term: bool = True
    count_long_term_usage: bool | None = None

    def validate(self, prefix: str = "") -> None:
        """Raise ``ValueError`` naming the first bad parameter."""
        def need(ok: bool, name: str, what: str):
            if not ok:
                raise ValueError(f"{prefix}{name} must be {what}, got {getattr(self, name)!r}")
        for name in ("mem_every", "max_mid_term_frames", "min_mid_term_frames", "num_prototypes",
                     "max_long_term_elements", "top_k"):
            need(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool)
                 and getattr(self, name) >= 1, name, "a positive integer")
        need(self.min_mid_term_frames < self.max_mid_term_frames, "min_mid_term_frames",
             f"smaller than max_mid_term_frames ({self.max_mid_term_frames})")
        need(self.min_mid_term_frames >= 2, "min_mid_term_frames", "at least 2")
        need(self.num_prototypes < self.max_long_term_elements, "num_prototypes",
             f"smaller than max_long_term_elements ({self.max_long_term_elements})")

    def long_term_usage_for(self, num_frames: int) -> bool:
        """test.py's rule: count long-term usage only when the clip can fill long-term memory."""
        if self.count_long_term_usage is not None:
            return self.count_long_term_usage
        per_frame = self.num_prototypes / (self.max_mid_term_frames - self.min_mid_term_frames)
        return num_frames * per_frame >= self.max_long_term_elements
