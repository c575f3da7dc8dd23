"""read_image / inspect_image / resize_to: every mode converted one way, every broken file named."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from ninshiki.data.images import ImageReadError, inspect_image, read_image, resize_to, to_channels

PIL_LIMIT = Image.MAX_IMAGE_PIXELS


def test_rgb_png_is_read_exactly(tmp_path: Path, helpers) -> None:
    array = helpers.gradient_rgb()
    Image.fromarray(array).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 64)
    assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1))


def test_one_channel_is_pil_luminance(tmp_path: Path, helpers) -> None:
    array = helpers.gradient_rgb()
    Image.fromarray(array).save(tmp_path / "a.png")
    expected = np.array(Image.fromarray(array).convert("L"))
    assert torch.equal(read_image(tmp_path / "a.png", channels=1)[0], torch.from_numpy(expected))
    assert torch.equal(to_channels(read_image(tmp_path / "a.png"), 1)[0], torch.from_numpy(expected))


def test_grayscale_to_three_channels_repeats(tmp_path: Path, helpers) -> None:
    path = helpers.write_mode(tmp_path / "g.png", "L")
    image = read_image(path)
    assert image.shape == (3, 48, 64) and torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_alpha_is_composited_onto_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[255, 128], [0, 255]]
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(tmp_path / "la.png")
    expected = torch.tensor([[200, 100], [0, 200]], dtype=torch.uint8)  # 200 * alpha / 255, rounded
    assert torch.equal(read_image(tmp_path / "a.png")[0], expected)
    assert torch.equal(read_image(tmp_path / "la.png", channels=1)[0], expected)


def test_palette_with_and_without_transparency(tmp_path: Path, helpers) -> None:
    plain = helpers.write_mode(tmp_path / "p.png", "P")
    expected = np.array(Image.open(plain).convert("RGB"))
    assert torch.equal(read_image(plain), torch.from_numpy(expected).permute(2, 0, 1))
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.save(tmp_path / "t.png", transparency=0)  # palette entry 0 (red) is transparent
    assert read_image(tmp_path / "t.png")[:, 0, 0].tolist() == [0, 0, 0]
    assert read_image(tmp_path / "t.png")[:, 0, 1].tolist() == [0, 255, 0]


def test_16_bit_is_scaled_by_its_full_range(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode == "I;16"
    assert read_image(tmp_path / "d.png", channels=1)[0].tolist() == [[0, 100, 255]]


def test_32_bit_integer_and_float_rules(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 257 * 10, 65535]], dtype=np.int32)).save(tmp_path / "i16range.tif")
    Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32)).save(tmp_path / "iwide.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "unit.tif")
    Image.fromarray(np.array([[-2.0, np.nan, 2.0]], dtype=np.float32)).save(tmp_path / "wide.tif")
    assert read_image(tmp_path / "i16range.tif", channels=1)[0].tolist() == [[0, 10, 255]]   # fits 16 bit
    assert read_image(tmp_path / "iwide.tif", channels=1)[0].tolist() == [[0, 128, 255]]    # own min..max
    assert read_image(tmp_path / "unit.tif", channels=1)[0].tolist() == [[0, 128, 255]]     # 0..1
    assert read_image(tmp_path / "wide.tif", channels=1)[0].tolist() == [[0, 128, 255]]     # NaN -> 0


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path, helpers) -> None:
    path = helpers.write_mode(tmp_path / "c.jpg", "CMYK")
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.shape == (3, 48, 64)
    error = (image.permute(1, 2, 0).int() - torch.from_numpy(helpers.gradient_rgb()).int()).abs().float().mean()
    assert error < 8  # the same picture, up to JPEG loss


def test_exif_orientation_6_is_turned_upright(tmp_path: Path, helpers) -> None:
    stored = helpers.write_exif_rotated(tmp_path / "phone.jpg", orientation=6)
    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (3, 64, 48)  # stored 64 wide x 48 tall, displayed 48 wide x 64 tall
    upright = torch.from_numpy(np.rot90(stored, k=-1).copy()).permute(2, 0, 1)  # 90 degrees clockwise
    assert (image.int() - upright.int()).abs().float().mean() < 4
    assert image[:, :16, 32:].float().mean() > 200 and image[:, :16, :16].float().mean() < 50


@pytest.mark.parametrize("kind, reason", [
    ("empty", "empty file (0 bytes)"),
    ("truncated_jpeg", "truncated image file"),
    ("truncated_png", "truncated image file"),
    ("random_bytes", "not an image"),
    ("text", "not an image"),
])
def test_broken_files_name_the_file_and_reason(bad_files: dict[str, Path], kind: str, reason: str) -> None:
    path = bad_files[kind]
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.path == str(path) and reason in info.value.reason
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nope.jpg: no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(tmp_path)


def test_bomb_is_refused_before_decoding(tmp_path: Path, helpers) -> None:
    Image.fromarray(helpers.gradient_rgb()).save(tmp_path / "small.png")
    with pytest.raises(ImageReadError, match=r"small.png: decompression bomb: 64x48 = 3,072 pixels"):
        read_image(tmp_path / "small.png", max_pixels=1000)
    huge = helpers.png_header_only(tmp_path / "huge.png", 100_000, 100_000)  # PIL itself refuses this one
    with pytest.raises(ImageReadError, match=r"huge.png: decompression bomb"):
        read_image(huge)
    assert Image.MAX_IMAGE_PIXELS == PIL_LIMIT and ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_only_bomb_within_pils_hard_limit_is_not_decoded(tmp_path: Path, helpers) -> None:
    # 100M pixels: PIL only warns, so our check is what stops it; decoding would fail as "truncated" instead
    path = helpers.png_header_only(tmp_path / "big.png", 10_000, 10_000)
    with pytest.raises(ImageReadError, match="decompression bomb: 10000x10000"):
        read_image(path)


def test_channels_must_be_1_or_3(tmp_path: Path, helpers) -> None:
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        read_image(helpers.write_mode(tmp_path / "a.png", "RGB"), channels=4)


def test_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(ImageReadError("photos/a.jpg", "truncated image file")))
    assert (err.path, err.reason) == ("photos/a.jpg", "truncated image file")
    assert str(err) == "photos/a.jpg: truncated image file"


@pytest.mark.parametrize("mode, suffix, issue", [
    ("I;16", "png", "16-bit"), ("CMYK", "jpg", "CMYK"), ("RGBA", "png", "RGBA"), ("P", "png", "palette"),
    ("L", "png", "grayscale"), ("LA", "png", "grayscale+alpha"), ("RGB", "png", None),
])
def test_inspect_reports_modes(tmp_path: Path, helpers, mode: str, suffix: str, issue: str | None) -> None:
    info = inspect_image(helpers.write_mode(tmp_path / f"x.{suffix}", mode))
    assert info.error is None and info.size == (64, 48)
    assert info.issues == ([issue] if issue else [])


def test_inspect_reports_rotation_bombs_and_errors(tmp_path: Path, helpers, bad_files) -> None:
    helpers.write_exif_rotated(tmp_path / "r.jpg")
    rotated = inspect_image(tmp_path / "r.jpg")
    assert rotated.exif_orientation == 6 and rotated.issues == ["exif-rotated"] and rotated.error is None
    huge = inspect_image(helpers.png_header_only(tmp_path / "huge.png", 100_000, 100_000))
    assert huge.issues == ["decompression bomb"] and huge.error.startswith("decompression bomb")
    small = inspect_image(tmp_path / "r.jpg", max_pixels=100)
    assert small.size == (64, 48) and "decompression bomb" in small.issues
    truncated = inspect_image(bad_files["truncated_png"])
    assert truncated.error == "truncated image file" and truncated.issues == ["truncated image file"]
    assert inspect_image(bad_files["empty"]).error == "empty file (0 bytes)"


def test_reading_leaves_files_untouched(tmp_path: Path, helpers, bad_files) -> None:
    helpers.write_exif_rotated(tmp_path / "r.jpg")
    helpers.write_mode(tmp_path / "d.png", "I;16")
    before = helpers.digest_tree(tmp_path)
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        inspect_image(path)
        try:
            read_image(path)
        except ImageReadError:
            pass
    assert helpers.digest_tree(tmp_path) == before


def test_resize_to_covers_then_center_crops() -> None:
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    image[:, :, 30:70] = 255                              # a centred white band, 40 wide
    out = resize_to(image, (20, 20))                      # 40x100 -> 20x50 -> centre 20x20
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
    assert out[:, :, 3:17].min() == 255                   # the band (now 20 wide) fills the crop
    assert resize_to(image, (40, 100)) is image           # no-op
    assert resize_to(torch.zeros(5, 1, 7, 9, dtype=torch.uint8), (4, 6)).shape == (5, 1, 4, 6)
    assert resize_to(torch.zeros(1, 10, 10, dtype=torch.uint8), (30, 20)).shape == (1, 30, 20)
