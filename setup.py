from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
requirements = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="npy_tome_layer",
    version="0.1.0",
    description="Pruned-HuBERT + DeltaLM end-to-end speech translation (fairseq plugin)",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["npy_tome_layer", "npy_tome_layer.*"]),
    # torch: the CPU wheel 2.13.0; fairseq: fairseq main repackaged (0.12.2 does
    # not build from its sdist). Both are installed by scripts/install.sh first.
    install_requires=["torch==2.13.0", "fairseq-fixed==0.12.3.1"] + requirements,
)
