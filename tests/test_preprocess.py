"""vitq.model.preprocess on real images: any mode and size becomes [3, crop, crop] normalized as the recipe says, the two
resize modes crop differently, and a missing or broken image file is one line naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitq.errors import InputError, display_path
from vitq.model.preprocess import build_transform, load_batch, open_image
from vitq.recipe import Preprocess

from helpers_models import make_images

SPEC = Preprocess(resize=36, crop=32, mean=[0.5, 0.4, 0.3], std=[0.25, 0.5, 0.2])


def solid(mode, size, value):
    return Image.new(mode, size, value)


@pytest.mark.parametrize("mode, value", [("RGB", (255, 255, 255)), ("L", 255), ("RGBA", (255, 255, 255, 0)),
                                         ("P", 0), ("1", 1), ("I;16", 65535)])
@pytest.mark.parametrize("size", [(40, 40), (300, 17), (9, 50)])
def test_any_mode_and_size_becomes_three_channels_of_the_crop(mode, value, size):
    image = solid(mode, size, value)
    tensor = build_transform(SPEC)(image)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    rgb = torch.tensor(np.asarray(image.convert("RGB"))[0, 0], dtype=torch.float32) / 255.0
    expected = (rgb - torch.tensor(SPEC.mean)) / torch.tensor(SPEC.std)
    assert torch.allclose(tensor, expected.view(3, 1, 1).expand(3, 32, 32), atol=1e-6)


def test_white_and_black_are_normalized_with_the_recipes_mean_and_std():
    white = build_transform(SPEC)(solid("RGB", (50, 40), (255, 255, 255)))
    black = build_transform(SPEC)(solid("L", (50, 40), 0))
    assert torch.allclose(white[:, 0, 0], torch.tensor([2.0, 1.2, 3.5]))
    assert torch.allclose(black[:, 0, 0], torch.tensor([-2.0, -0.8, -1.5]))


def bands(width=96, height=32):
    """A wide image: black, white, black thirds."""
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[:, width // 3 : 2 * width // 3] = 255
    return Image.fromarray(pixels, mode="L")


def test_shorter_side_resize_crops_the_center_and_exact_resize_squashes_the_whole_image():
    shorter = build_transform(Preprocess(resize=32, crop=32, mean=[0.0] * 3, std=[1.0] * 3))(bands())
    exact = build_transform(Preprocess(resize=32, crop=32, resize_mode="exact", mean=[0.0] * 3, std=[1.0] * 3))(bands())
    assert torch.equal(shorter, torch.ones(3, 32, 32))  # only the white middle third is left
    columns = exact[0, 16]
    assert columns[:8].max() < 0.1 and columns[-8:].max() < 0.1 and columns[13:19].min() > 0.9


def test_interpolation_is_the_recipes():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    out = {mode: build_transform(Preprocess(resize=37, crop=32, interpolation=mode, mean=[0.0] * 3,
                                            std=[1.0] * 3))(image) for mode in ("nearest", "bicubic")}
    assert not torch.equal(out["nearest"], out["bicubic"])
    values = set((out["nearest"] * 255).round().int().flatten().tolist())
    assert values <= set(np.asarray(image).flatten().tolist())  # nearest makes no new colours


def test_load_batch_stacks_the_files_in_order(tmp_path):
    folder = make_images(tmp_path / "images")
    files = sorted(folder.glob("img*"))
    batch = load_batch(SPEC, files)
    assert batch.shape == (len(files), 3, 32, 32)
    transform = build_transform(SPEC)
    for row, path in zip(batch, files, strict=True):
        with Image.open(path) as im:
            assert torch.equal(row, transform(im))
    assert torch.equal(load_batch(SPEC, files[::-1]), batch.flip(0))


def test_open_image_decodes_fully_so_the_file_can_go(tmp_path):
    path = make_images(tmp_path / "images") / "img1.png"
    image = open_image(path)
    path.unlink()
    assert image.size == (47, 38) and image.convert("RGB").getpixel((0, 0)) is not None


@pytest.mark.parametrize("name, content, problem", [
    ("gone.png", None, "image file not found"),
    ("notes.png", b"just some text", "not a readable image (UnidentifiedImageError)"),
    ("cut.png", "truncated", "not a readable image (OSError)"),
    ("folder.png", "dir", "not a readable image (IsADirectoryError)"),
])
def test_a_missing_or_broken_image_is_one_line_naming_the_file(tmp_path, monkeypatch, name, content, problem):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    if content == "truncated":
        good = make_images(tmp_path / "images") / "img1.png"
        path.write_bytes(good.read_bytes()[:200])
    elif content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        open_image(path)
    assert str(info.value) == f"{display_path(path)}: {problem}" == f"{name}: {problem}"
    with pytest.raises(InputError, match=name):
        load_batch(SPEC, [make_images(tmp_path / "more") / "img0.jpg", path])
