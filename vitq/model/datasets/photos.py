"""Real photographs that scikit-image ships in its wheel, with the ImageNet classes each may fairly get.

Found on disk without importing scikit-image (slow) and never downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vitq.errors import VitqError

# file in skimage/data -> accepted ImageNet-1k class indices (first = primary label)
PHOTOS: dict[str, tuple[int, ...]] = {
    "chelsea.png": (281, 282, 285),  # tabby, tiger cat, Egyptian cat
    "coffee.png": (967, 968, 504),  # espresso, cup, coffee mug
    "rocket.jpg": (812, 657, 744),  # space shuttle, missile, projectile
    "motorcycle_left.png": (665, 670),  # moped, motor scooter
}


def data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise VitqError("samples: photos needs scikit-image installed (pip install scikit-image)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def photo_files() -> list[tuple[Path, tuple[int, ...]]]:
    folder = data_dir()
    missing = [name for name in PHOTOS if not (folder / name).is_file()]
    if missing:
        raise VitqError(f"{folder}: scikit-image's bundled photos are missing ({', '.join(missing)})")
    return [(folder / name, classes) for name, classes in PHOTOS.items()]
