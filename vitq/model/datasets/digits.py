"""scikit-learn's bundled 8x8 handwritten digits, split once, the same way for training and samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplit:
    train_images: np.ndarray  # uint8 [N, 8, 8], 0..255
    train_labels: np.ndarray
    held_out_images: np.ndarray
    held_out_labels: np.ndarray
    held_out_index: np.ndarray  # row in the original data set, used to name sample files
    train_index: np.ndarray  # the same for the training rows (calibration images are named by it)


def load_split(holdout: float, seed: int) -> DigitsSplit:
    """A stratified split: every class keeps its share in the held-out set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    index = np.arange(len(images))
    tr, te = train_test_split(index, test_size=holdout, random_state=seed, stratify=data.target)
    te = np.sort(te)
    return DigitsSplit(images[tr], data.target[tr], images[te], data.target[te], te, tr)
