"""The shot plan: a clip cut into shots at known cuts, the unit of work for film-length clips.

Cuts known up front (``Colorize(cuts=...)``, a ``cuts.txt`` file, or a reference folder's index)
make every shot start an anchor where the recurrent state is the initial one, so frame n is
reachable by computing only from the start of n's shot, shots can run concurrently, and a
shot can read only its own references (``ref_scope='shot'``).
"""
from __future__ import annotations

import bisect
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from ..util.errors import PlanError  # noqa: F401  (defined with the other user errors)


@dataclass(frozen=True)
class ShotPlan:
    """``cuts``: sorted first frames of every shot after the first (0 < cut < num_frames)."""

    num_frames: int
    cuts: tuple[int, ...] = ()

    @property
    def starts(self) -> tuple[int, ...]:
        """First frame of every shot (0 first)."""
        return (0, *self.cuts)

    def __len__(self) -> int:
        return len(self.cuts) + 1

    def shot_of(self, n: int) -> int:
        """Index of the shot that holds frame ``n``."""
        return bisect.bisect_right(self.cuts, n)

    def bounds(self, shot: int) -> tuple[int, int]:
        """``(start, stop)`` frames of shot ``shot`` (stop exclusive)."""
        starts = self.starts
        return starts[shot], (starts[shot + 1] if shot + 1 < len(starts) else self.num_frames)


def read_cuts_file(path: str | os.PathLike) -> list[int]:
    """A ``cuts.txt`` (one frame number per line; blank lines and ``#`` comments ignored)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PlanError(f"cuts file {path} does not exist")
    cuts = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            cuts.append(int(text))
        except ValueError:
            raise PlanError(f"cuts file {path} line {i}: expected a frame number, got {text!r}") from None
    return cuts


def make_plan(cuts, num_frames: int, extra: frozenset[int] | set[int] = frozenset()) -> ShotPlan:
    """A plan from ``cuts`` (None, a list of frame numbers, or a ``cuts.txt`` path) plus ``extra`` cuts.

    A cut at frame 0 is allowed and ignored (frame 0 always starts a shot).
    """
    if cuts is None:
        given: list[int] = []
    elif isinstance(cuts, (str, os.PathLike)):
        given = read_cuts_file(cuts)
    elif isinstance(cuts, (list, tuple)) and all(isinstance(c, numbers.Integral) and not isinstance(c, bool)
                                                 for c in cuts):
        given = [int(c) for c in cuts]
    else:
        raise PlanError(f"cuts must be None, a list of frame numbers or a cuts.txt path, got {cuts!r}")
    bad = [c for c in given if not 0 <= c < num_frames]
    if bad:
        raise PlanError(f"cuts must be frame numbers within 0…{num_frames - 1}, got {bad[0]}")
    return ShotPlan(num_frames, tuple(sorted({c for c in (*given, *extra) if 0 < c < num_frames})))
