"""vitq.model.datasets: the digits split (stratified, the same for every call with the same seed, and the very split the
default recipe's sample set was built from) and scikit-image's bundled photographs, found without importing it."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitq.errors import VitqError
from vitq.model.datasets import digits, photos

from conftest import REPO

TOTAL = 1797  # images in scikit-learn's digits


@pytest.fixture(scope="module")
def split():
    return digits.load_split(0.2, 0)


def test_every_image_is_in_exactly_one_part(split):
    assert len(split.train_images) + len(split.held_out_images) == TOTAL
    assert len(split.held_out_images) == len(split.held_out_labels) == len(split.held_out_index) == 360
    assert len(split.train_images) == len(split.train_labels)
    assert len(set(split.held_out_index.tolist())) == 360 and split.held_out_index.max() < TOTAL
    assert np.all(np.diff(split.held_out_index) > 0)  # sorted: sample files are named in data set order


def test_the_split_is_stratified(split):
    """Every digit keeps its share of the data set in the held-out part (to one image)."""
    train, held = np.bincount(split.train_labels, minlength=10), np.bincount(split.held_out_labels, minlength=10)
    assert train.tolist() and all(abs(h - 0.2 * (t + h)) <= 1 for t, h in zip(train, held, strict=True))


def test_images_are_8x8_uint8_spanning_0_to_255_and_labels_match_the_data_set(split):
    from sklearn.datasets import load_digits

    data = load_digits()
    assert split.held_out_images.shape == (360, 8, 8) and split.held_out_images.dtype == np.uint8
    assert split.train_images.dtype == np.uint8 and split.train_images.max() == 255 and split.train_images.min() == 0
    assert np.array_equal(split.held_out_labels, data.target[split.held_out_index])
    source = data.images[split.held_out_index]  # 0..16 ink levels: black stays black, full ink is 255
    assert np.array_equal(split.held_out_images == 0, source == 0)
    assert np.array_equal(split.held_out_images == 255, source == 16)


def test_the_same_seed_gives_the_same_split_and_another_seed_another(split):
    again = digits.load_split(0.2, 0)
    for field in ("train_images", "train_labels", "held_out_images", "held_out_labels", "held_out_index"):
        assert np.array_equal(getattr(split, field), getattr(again, field)), field
    assert not np.array_equal(digits.load_split(0.2, 1).held_out_index, split.held_out_index)
    assert len(digits.load_split(0.5, 0).held_out_index) == 899


def test_the_default_recipes_sample_set_has_not_moved(split):
    """recipes/digits.yaml (holdout 0.2, seed 0) ships these 360 images as samples/: a scikit-learn upgrade that
    split differently would change every release's bytes and accuracy figures. Update the digest only on purpose."""
    assert split.held_out_index[:8].tolist() == [21, 24, 28, 34, 35, 37, 39, 42]
    digest = hashlib.sha256(split.held_out_index.astype("<i8").tobytes()).hexdigest()
    assert digest == "2fbaae31b8c6aad12464a07771b64269876d904bfed86f77a63c8265fa201621"


def test_the_photos_are_scikit_images_own_files_with_their_accepted_classes():
    found = photos.photo_files()
    assert [path.name for path, _ in found] == list(photos.PHOTOS)
    for path, classes in found:
        assert path.parent == photos.data_dir() and path.is_file()
        assert classes == photos.PHOTOS[path.name] and all(0 <= c < 1000 for c in classes)
        with Image.open(path) as im:
            assert min(im.size) >= 224  # big enough for a 224 crop without upscaling
    spec = importlib.util.find_spec("skimage")
    assert photos.data_dir() == Path(spec.origin).parent / "data"


def test_finding_the_photos_does_not_import_scikit_image():
    code = ("import sys; from vitq.model.datasets.photos import photo_files; photo_files(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('skimage', 'torch')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_scikit_image_the_photos_are_one_line_saying_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(VitqError) as info:
        photos.photo_files()
    assert str(info.value) == "samples: photos needs scikit-image installed (pip install scikit-image)"


def test_missing_photo_files_are_named_in_one_line(monkeypatch, tmp_path):
    (tmp_path / "chelsea.png").write_bytes(b"")
    monkeypatch.setattr(photos, "data_dir", lambda: tmp_path)
    with pytest.raises(VitqError) as info:
        photos.photo_files()
    assert str(info.value) == (f"{tmp_path}: scikit-image's bundled photos are missing "
                               "(coffee.png, rocket.jpg, motorcycle_left.png)")
