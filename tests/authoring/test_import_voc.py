"""Pascal VOC: XML boxes and palette segmentation PNGs (indices, not colours; 255 = void)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.authoring.importers.voc import import_voc_segmentation
from harness.regions import rasterize
from harness.spec import load_suite

H, W = 24, 32
STEM = "2007_000032"
DOG, CAT = 12, 8  # VOC class indices


def _palette() -> list[int]:
    # VOC's colour map: bit-interleaved index -> RGB. Index 1 is dark red, not (1, 1, 1),
    # so reading the RGB values instead of the indices would give the wrong answer.
    out = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out += [r, g, b]
    return out


def _palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(_palette())
    image.save(path)


def _voc(tmp_path: Path, write_image) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path / "VOC2012"
    write_image(root / "JPEGImages" / f"{STEM}.jpg", H, W, seed=4)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / f"{STEM}.xml").write_text(
        f"""<annotation>
  <folder>VOC2012</folder>
  <filename>{STEM}.jpg</filename>
  <source><database>The VOC2007 Database</database></source>
  <size><width>{W}</width><height>{H}</height><depth>3</depth></size>
  <segmented>1</segmented>
  <object><name>dog</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>3</xmin><ymin>4</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
  <object><name>cat</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>15</xmin><ymin>2</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>
  <object><name>person</name><pose>Left</pose><truncated>0</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>15</ymin><xmax>8</xmax><ymax>24</ymax></bndbox></object>
</annotation>
""",
        encoding="utf-8",
    )
    dog = np.zeros((H, W), bool)
    dog[4:11, 3:9] = True
    cat = np.zeros((H, W), bool)
    cat[3:19, 16:29] = True
    classes = np.zeros((H, W), np.uint8)
    objects = np.zeros((H, W), np.uint8)
    classes[dog], classes[cat] = DOG, CAT
    objects[dog], objects[cat] = 1, 2
    # The void border VOC draws around every object.
    border = np.zeros((H, W), bool)
    for mask in (dog, cat):
        ys, xs = np.nonzero(mask)
        border[max(ys.min() - 1, 0) : ys.max() + 2, max(xs.min() - 1, 0) : xs.max() + 2] = True
    border &= ~(dog | cat)
    classes[border] = objects[border] = 255
    _palette_png(root / "SegmentationClass" / f"{STEM}.png", classes)
    _palette_png(root / "SegmentationObject" / f"{STEM}.png", objects)
    return root, dog, cat


def _masks(suite: Path) -> dict[str, np.ndarray]:
    spec = load_suite(suite)
    assert spec.error is None and all(not c.errors for c in spec.cases), [c.errors for c in spec.cases]
    return {c.case_id: rasterize(c.regions, (H, W), c.base_dir) for c in spec.cases}


def test_voc_boxes(tmp_path: Path, write_image, registry: Path, cli) -> None:
    root, _, _ = _voc(tmp_path, write_image)
    suite = tmp_path / "voc_boxes.xai.yaml"
    code, _, err = cli(
        "import",
        "voc",
        root / "Annotations",
        "-o",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
        "--map",
        "dog=canine",
        "--map",
        "cat=feline",
    )
    assert code == 0, err
    masks = _masks(suite)
    assert sorted(masks) == [f"{STEM}_0", f"{STEM}_1"]  # person: not a class of the model
    expected_dog = np.zeros((H, W), bool)
    expected_dog[3:12, 2:10] = True  # 1-based inclusive xmin=3..xmax=10 -> columns 2..9
    expected_cat = np.zeros((H, W), bool)
    expected_cat[1:20, 14:30] = True
    assert np.array_equal(masks[f"{STEM}_0"], expected_dog)
    assert np.array_equal(masks[f"{STEM}_1"], expected_cat)
    assert "truncated" in suite.read_text()  # VOC flags are kept as comments


def test_voc_instance_pngs(tmp_path: Path, write_image, registry: Path, cli) -> None:
    root, dog, cat = _voc(tmp_path, write_image)
    suite = tmp_path / "out" / "voc_objects.xai.yaml"
    code, _, err = cli(
        "import",
        "voc",
        "--segmentation",
        "object",
        root / "SegmentationObject",
        "-o",
        suite,
        "--model",
        "pets",
        "--models",
        registry,
        "--map",
        "dog=canine",
        "--map",
        "cat=feline",
    )
    assert code == 0, err
    masks = _masks(suite)
    # Instance ids match the box ids of the same objects (instance k is XML object k-1).
    assert np.array_equal(masks[f"{STEM}_0"], dog)
    assert np.array_equal(masks[f"{STEM}_1"], cat)
    assert (suite.parent / "masks" / f"{STEM}_0.png").is_file()
    code, out, _ = cli("validate", suite, "--models", registry)
    assert code == 0, out


def test_voc_class_pngs(tmp_path: Path, write_image) -> None:
    root, dog, cat = _voc(tmp_path, write_image)
    result = import_voc_segmentation([root / "SegmentationClass" / f"{STEM}.png"], kind="class")
    by_label = {c.label: c.regions[0].value for c in result.cases}
    assert set(by_label) == {"dog", "cat"}
    assert np.array_equal(by_label["dog"], dog) and np.array_equal(by_label["cat"], cat)


def test_instance_classes_fall_back_to_the_xml(tmp_path: Path, write_image) -> None:
    root, dog, _ = _voc(tmp_path, write_image)
    (root / "SegmentationClass" / f"{STEM}.png").unlink()
    result = import_voc_segmentation([root / "SegmentationObject"], kind="object")
    assert [c.label for c in result.cases] == ["dog", "cat"]


def test_rgb_png_is_refused(tmp_path: Path, write_image) -> None:
    path = write_image(tmp_path / "SegmentationObject" / "x.png", H, W)
    result = import_voc_segmentation([path])
    assert not result.cases and "palette" in result.warnings[0]
