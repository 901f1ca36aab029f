"""vscolormnet: ColorMNet video colorization for VapourSynth (PyTorch, ONNX Runtime, TensorRT)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
REQUIREMENTS = [
    line.split("#")[0].strip()
    for line in (ROOT / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip() and not line.startswith("pytest")
]

setup(
    name="vscolormnet",
    version="0.1.0",
    description=__doc__,
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT (code); the ColorMNet weights are CC BY-NC-SA 4.0 and are not included",
    packages=find_packages(include=["vscolormnet", "vscolormnet.*"]),
    python_requires=">=3.12",
    install_requires=REQUIREMENTS,
    extras_require={
        # GPU-only packages: onnxruntime-gpu replaces onnxruntime (same module name).
        "cuda": ["onnxruntime-gpu==1.31.1"],
        "trt": ["tensorrt-cu13==11.4.0.106"],
    },
    entry_points={"console_scripts": ["vscolormnet=vscolormnet.__main__:main"]},
)
