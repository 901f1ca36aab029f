"""The film tests' clip and the single-process render they compare with, made once per test process."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from .film_media import make_media, single_process


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    return make_media(tmp_path_factory.mktemp("film_media"))


@pytest.fixture(scope="session")
def expected(media, parity_checkpoint, tmp_path_factory) -> list[np.ndarray]:
    return single_process(media, parity_checkpoint, tmp_path_factory.mktemp("single") / "single.mkv")
