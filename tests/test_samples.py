"""Labels files (CSV or YAML) and the sample set a build is checked on."""

from __future__ import annotations

import pytest

from vitq.errors import InputError
from vitq.model.samples import read_labels, read_samples, source_files, write_labels_csv

from helpers_models import make_images, tiny_recipe


def test_csv_labels_accept_several_classes_per_image(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\ncat.png,281 282\n\ndog.jpg,207\n")
    assert read_labels(labels) == [("cat.png", (281, 282)), ("dog.jpg", (207,))]


def test_yaml_labels_and_a_csv_written_back_read_the_same(tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text("cat.png: [281, 282]\ndog.jpg: 207\n")
    rows = read_labels(labels)
    write_labels_csv(tmp_path / "labels.csv", rows)
    assert read_labels(tmp_path / "labels.csv") == rows == [("cat.png", (281, 282)), ("dog.jpg", (207,))]


@pytest.mark.parametrize("text, message", [
    ("name,class\n", "expected a CSV header 'file,label'"),
    ("file,label\nonly\n", "line 2: expected 'file,label'"),
    ("file,label\na.png,cat\n", "line 2: class must be an integer index"),
    ("file,label\na.png,\n", "line 2: no class given"),
])
def test_a_bad_labels_file_is_one_line_naming_it_and_the_line(tmp_path, text, message):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(InputError, match=f"labels.csv: {message}"):
        read_labels(labels)


def test_samples_outside_their_folder_or_of_unknown_classes_are_refused(tmp_path):
    make_images(tmp_path / "s", count=2)
    labels = tmp_path / "s" / "labels.csv"
    assert [s.label for s in read_samples(labels, num_classes=5)] == [0, 1]
    with pytest.raises(InputError, match=r"img1.png: class \(1,\) out of range 0..0"):
        read_samples(labels, num_classes=1)
    labels.write_text("file,label\n../x.png,1\n")
    with pytest.raises(InputError, match="../x.png: points outside"):
        read_samples(labels)


def test_a_users_folder_is_listed_file_by_file_and_missing_files_are_left_to_the_stage(tmp_path):
    recipe = tiny_recipe(tmp_path)
    files = source_files(recipe)
    assert files["labels"].name == "labels.csv" and "image:img5.png" in files and len(files) == 7
    (tmp_path / "images" / "labels.csv").unlink()
    assert "labels" not in source_files(recipe)
