"""Image intake: raster and DICOM decoding, LUTs, frames, and the refusal of every kind of bad input."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from intake_fixtures import (
    compressed_dicom_declaring,
    dicom_bytes,
    dicom_data_dir,
    dicom_nested,
    encode,
    make_dataset,
    pdf_bytes,
    png_declaring,
    structured_report,
)
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.pixels.processing import convert_color_space

from medapp.errors import InvalidImageError, MedAppError, UnsupportedImageError
from medapp.intake.color import luma_601
from medapp.intake.imaging import load_image
from medapp.intake.limits import IntakeLimits
from medapp.intake.medical_image import MedicalImage
from medapp.intake.privacy import SAFE_METADATA_KEYS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PYDICOM_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
RNG = np.random.default_rng(7)


def assert_valid(image: MedicalImage) -> None:
    h, w = image.pixels.shape
    assert image.pixels.dtype == np.float32 and np.isfinite(image.pixels).all()
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    assert image.display.dtype == np.uint8 and image.display.shape == (h, w, 3)
    assert image.original_size == (h, w)
    assert 0 <= image.frame_index < image.frame_count


# --- raster ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_rgb_matches_pillow_luma_exactly(fmt):
    rgb = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    image = load_image(encode(rgb, fmt))
    assert_valid(image)
    assert image.source_kind == fmt.lower()
    np.testing.assert_array_equal(image.display, rgb)
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255
    np.testing.assert_array_equal(image.pixels, expected)
    np.testing.assert_array_equal(luma_601(rgb), expected)


def test_grayscale_png_keeps_values_and_jpeg_decodes():
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (40, 1))
    image = load_image(encode(gray, "PNG"))
    np.testing.assert_array_equal(image.pixels, gray / np.float32(255))
    assert image.metadata == {"format": "PNG", "mode": "L", "bit_depth": 8}
    assert set(image.metadata) <= SAFE_METADATA_KEYS
    jpeg = load_image(encode(gray, "JPEG", quality=95))
    assert jpeg.source_kind == "jpeg" and np.abs(jpeg.pixels - gray / 255).max() < 0.05


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(0, 0.0), (65535, 1.0), (32768, 32768 / 65535), (257, 257 / 65535)],
)
def test_16bit_png_uses_full_16bit_range(stored, expected):
    array = np.full((40, 40), stored, dtype=np.uint16)
    image = load_image(encode(array, "PNG"))
    assert image.pixels[0, 0] == pytest.approx(expected, abs=1e-6)
    assert image.metadata["bit_depth"] == 16 and any("16-bit" in n for n in image.notes)


def test_rgba_transparency_composited_on_black():
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :20, 3] = 255  # left half opaque, right half transparent
    image = load_image(encode(rgba, "PNG"))
    assert image.display[0, 0].tolist() == [200, 200, 200] and image.display[0, 39].tolist() == [0, 0, 0]
    assert "transparent areas shown as black" in image.notes


def test_exif_orientation_applied():
    array = np.zeros((40, 60), dtype=np.uint8)
    array[0, 0] = 255  # marker top-left of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", exif=exif)
    image = load_image(buf.getvalue())
    assert image.original_size == (60, 40)  # (height, width) after turning upright
    assert image.pixels[0, -1] == 1.0  # top-left moved to top-right
    assert any("EXIF orientation" in n for n in image.notes)


def test_multipage_tiff_frames():
    pages = [Image.fromarray(np.full((40, 40), v, dtype=np.uint8)) for v in (0, 255)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    image = load_image(buf.getvalue(), frame=1)
    assert (image.frame_index, image.frame_count) == (1, 2) and image.pixels.max() == 1.0
    assert "frame 2 of 2" in image.notes


def test_sources_bytes_path_fileobj_and_wrong_extension(tmp_path):
    rgb = RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    png = encode(rgb, "PNG")
    path = tmp_path / "scan.dcm"  # a PNG with a DICOM extension
    path.write_bytes(png)
    dcm_no_ext = tmp_path / "IM0001"
    dcm_no_ext.write_bytes(dicom_bytes(make_dataset(rgb[..., 0])))
    for source in (png, path, str(path), io.BytesIO(png)):
        assert load_image(source).source_kind == "png"
    assert load_image(dcm_no_ext).source_kind == "dicom"
    renamed = tmp_path / "photo.jpg"
    renamed.write_bytes(dcm_no_ext.read_bytes())
    assert load_image(renamed).source_kind == "dicom"


def test_busi_png_matches_training_decode(busi_dir):
    path = next((busi_dir / "busi" / "malignant").glob("*).png"))
    image = load_image(path)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("L"), dtype=np.float32) / 255
    np.testing.assert_array_equal(image.pixels, expected)
    assert_valid(image)


# --- DICOM: hand-checked LUT arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "expected"),
    [  # rescale -1024 -> HU; window C=40 W=400 (PS3.3 C.11.2.1.2): y = (x - 39.5) / 399 + 0.5, clipped
        (1064, (40 - 39.5) / 399 + 0.5),
        (964, (-60 - 39.5) / 399 + 0.5),
        (824, 0.0),
        (1264, 1.0),
    ],
)
def test_rescale_then_window(stored, expected):
    array = np.full((32, 32), stored, dtype=np.int16)
    ds = make_dataset(array, signed=True, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    image = load_image(dicom_bytes(ds))
    assert image.pixels[0, 0] == pytest.approx(expected, abs=1e-6)
    assert "applied window C=40 W=400" in image.notes and "applied rescale slope 1 intercept -1024" in image.notes


@pytest.mark.parametrize(("stored", "expected"), [(0, 1.0), (255, 0.0), (51, 0.8)])
def test_monochrome1_is_inverted(stored, expected):
    array = np.full((32, 32), stored, dtype=np.uint8)
    image = load_image(dicom_bytes(make_dataset(array, photometric="MONOCHROME1")))
    assert image.pixels[0, 0] == pytest.approx(expected, abs=1e-6)
    assert any("inverted MONOCHROME1" in n for n in image.notes)


def test_no_window_uses_robust_min_max_and_signed_pixels():
    array = np.linspace(-2000, 2000, 64 * 64).reshape(64, 64).astype(np.int16)
    image = load_image(dicom_bytes(make_dataset(array, signed=True, bits_stored=12)))
    assert image.pixels[0, 0] == 0.0 and image.pixels[-1, -1] == 1.0
    assert image.pixels[32, 0] == pytest.approx(0.5, abs=0.01)  # signed values not wrapped around
    assert any("percentile" in n for n in image.notes)


def test_ybr_full_converted_to_rgb_and_spacing():
    rgb = RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = make_dataset(ybr, photometric="YBR_FULL", PixelSpacing=[0.5, 0.25])
    image = load_image(dicom_bytes(ds))
    assert np.abs(image.display.astype(int) - rgb).max() <= 2
    assert image.pixel_spacing_mm == (0.5, 0.25)


def test_ultrasound_region_spacing_in_mm():
    region = pydicom.Dataset()
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.02
    ds = make_dataset(np.zeros((40, 40), np.uint8), modality="US", SequenceOfUltrasoundRegions=[region])
    assert load_image(dicom_bytes(ds)).pixel_spacing_mm == pytest.approx((0.2, 0.1))


# --- DICOM: real files against pydicom's own pipeline ------------------------------------------------------------


def test_cr_monochrome1_jpeg2000_matches_pydicom():
    path = dicom_data_dir() / "RG3_J2KI.dcm"
    ds = pydicom.dcmread(path)
    expected = 1.0 - apply_voi_lut(pixel_array(ds), ds) / (2**ds.BitsStored - 1)
    image = load_image(path)
    assert image.original_size == (1760, 1760) and image.frame_count == 1
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_signed_mr_window_matches_pydicom():
    path = PYDICOM_FILES / "MR_small.dcm"
    ds = pydicom.dcmread(path)
    out = apply_voi_lut(apply_modality_lut(pixel_array(ds), ds), ds)
    expected = (out + 32768) / 65535  # pydicom maps the window onto the signed 16-bit range
    np.testing.assert_allclose(load_image(path).pixels, expected, atol=1e-4)


def test_voi_lut_and_palette_match_pydicom():
    root = dicom_data_dir()
    ds = pydicom.dcmread(root / "vlut_04.dcm")
    out = apply_voi_lut(pixel_array(ds), ds).astype(float)
    np.testing.assert_allclose(load_image(root / "vlut_04.dcm").pixels, (out - out.min()) / np.ptp(out), atol=2e-3)
    ds = pydicom.dcmread(root / "OBXXXX1A.dcm")
    rgb16 = apply_color_lut(pixel_array(ds), ds)  # a 16-bit palette: scaled by 255 / 65535 = 1 / 257
    np.testing.assert_array_equal(load_image(root / "OBXXXX1A.dcm").display, np.round(rgb16 / 257))


def test_ultrasound_rgb_jpeg2000_ybr_ict_matches_uncompressed():
    root = dicom_data_dir()
    raw, j2k = load_image(root / "US1_UNCR.dcm"), load_image(root / "US1_J2KI.dcm")
    np.testing.assert_array_equal(raw.display, pixel_array(pydicom.dcmread(root / "US1_UNCR.dcm")))
    assert np.abs(raw.display.astype(int) - j2k.display).mean() < 3  # same scan, lossy J2K: colours right


@pytest.mark.parametrize(
    ("name", "frames", "notes"),
    [
        ("OBXXXX1A_2frame.dcm", 2, "converted palette colour to RGB"),
        ("emri_small_jpeg_ls_lossless.dcm", 10, "frame 1 of 10"),
        ("gdcm-US-ALOKA-16.dcm", 1, "converted palette colour to RGB"),
        ("mlut_18.dcm", 1, "applied the modality LUT"),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", 1, "applied window C=127 W=254"),
    ],
)
def test_shared_dicoms(name, frames, notes):
    image = load_image(dicom_data_dir() / name)
    assert_valid(image)
    assert image.frame_count == frames and notes in image.notes
    assert image.display.max() > 100  # 16-bit palettes scaled into view, not black


def test_frame_selection_and_range():
    path = dicom_data_dir() / "OBXXXX1A_2frame.dcm"
    assert load_image(path, frame=1).frame_index == 1
    with pytest.raises(InvalidImageError, match=r"frame 2 requested but the file has 2 \(0 to 1\)"):
        load_image(path, frame=2)
    with pytest.raises(InvalidImageError, match="non-negative integer"):
        load_image(path, frame=-1)


CORPUS = sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file())


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's own notes on its deliberately odd files
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(PYDICOM_FILES)))
def test_every_pydicom_file_loads_or_is_refused_typed(path):
    try:
        image = load_image(path)
    except MedAppError as e:
        assert isinstance(e, (InvalidImageError, UnsupportedImageError)) and len(str(e)) > 20
        return
    assert_valid(image)
    ds = pydicom.dcmread(path, force=True)
    assert image.frame_count == int(ds.get("NumberOfFrames") or 1)
    assert image.original_size == (ds.Rows, ds.Columns)


def test_every_shared_dicom_loads():
    for path in sorted(dicom_data_dir().glob("*.dcm")):
        assert_valid(load_image(path))


# --- refusals ----------------------------------------------------------------------------------------------------

_GRAY = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
_PNG, _JPEG = encode(_GRAY, "PNG"), encode(_GRAY, "JPEG")
_DICOM = dicom_bytes(make_dataset(np.zeros((64, 64), np.uint16)))
_ONE_BIT = make_dataset(np.zeros((64, 64), np.uint8))
_ONE_BIT.BitsAllocated = _ONE_BIT.BitsStored = 1
_ONE_BIT.HighBit = 0
_ONE_BIT.PixelData = b"\x00" * (64 * 64 // 8)
_DICOM_BOMB = make_dataset(np.zeros((8, 8), np.uint8))
_DICOM_BOMB.Rows = _DICOM_BOMB.Columns = 30000

BAD_INPUTS = {
    "empty": (b"", InvalidImageError, "empty"),
    "truncated png": (_PNG[: len(_PNG) // 2], InvalidImageError, "truncated"),
    "truncated jpeg": (_JPEG[: len(_JPEG) // 2], InvalidImageError, "truncated"),
    "truncated dicom": (_DICOM[: len(_DICOM) // 2], InvalidImageError, "truncated"),
    "random bytes": (RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(), InvalidImageError, "unrecognised"),
    "text": (b"Patient notes: nothing to see here\n" * 20, InvalidImageError, "text, not an image"),
    "pdf": (pdf_bytes(), UnsupportedImageError, "PDF document"),
    "1x1 png": (encode(np.zeros((1, 1), np.uint8), "PNG"), UnsupportedImageError, "at least 32 px"),
    "png declaring 30000x30000": (png_declaring(30000, 30000), UnsupportedImageError, "decompression bomb"),
    "dicom declaring 30000x30000": (dicom_bytes(_DICOM_BOMB), UnsupportedImageError, "decompression bomb"),
    "dicom without pixel data": (dicom_bytes(structured_report()), UnsupportedImageError,
                                 "no pixel data .*structured report"),
    "1-bit dicom": (dicom_bytes(_ONE_BIT), UnsupportedImageError, "1-bit"),
    "1-bit png": (encode(np.zeros((40, 40), bool), "PNG"), UnsupportedImageError, "1-bit"),
    "gif": (b"GIF89a" + b"\x00" * 100, UnsupportedImageError, "GIF"),
    "zip": (b"PK\x03\x04" + b"\x00" * 100, UnsupportedImageError, "ZIP archive"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_refused_with_clear_message(name, tmp_path):
    data, error, pattern = BAD_INPUTS[name]
    with pytest.raises(error, match=pattern):
        load_image(data)
    path = tmp_path / "upload.png"  # the extension lies; content decides
    path.write_bytes(data)
    with pytest.raises(error, match=pattern):
        load_image(path)


def test_limits_are_configurable_and_stated():
    with pytest.raises(UnsupportedImageError, match="over the 0 MB limit"):
        load_image(_PNG, limits=IntakeLimits(max_file_bytes=10))
    with pytest.raises(UnsupportedImageError, match="at least 100 px"):
        load_image(_PNG, limits=IntakeLimits(min_side=100))
    with pytest.raises(UnsupportedImageError, match="limit of 0 Mpx"):
        load_image(_PNG, limits=IntakeLimits(max_pixels=1000))
    with pytest.raises(UnsupportedImageError, match="over the"):
        load_image(io.BytesIO(_PNG), limits=IntakeLimits(max_file_bytes=10))


def test_missing_file_and_folder_are_typed(tmp_path):
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "nothere.png")
    with pytest.raises(InvalidImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(InvalidImageError, match="expected bytes"):
        load_image(42)  # type: ignore[arg-type]


def test_a_later_tiff_page_is_checked_against_the_pixel_limit_before_decoding():
    """Issue 12, item 2: page 1 is small, page 2 declares more pixels than the limit; only page 2 is refused."""
    pages = [Image.fromarray(np.zeros((40, 40), dtype=np.uint8)), Image.fromarray(np.zeros((400, 400), dtype=np.uint8))]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    limits = IntakeLimits(max_pixels=100_000)
    assert load_image(buf.getvalue(), limits=limits).frame_count == 2
    with pytest.raises(UnsupportedImageError, match="TIFF page 2 declares 400x400 px.*possible decompression bomb"):
        load_image(buf.getvalue(), frame=1, limits=limits)


def test_only_regular_files_are_read_and_never_past_the_size_limit(tmp_path):
    """Issue 12, item 3: a link to /dev/zero, a FIFO without a writer (which would block) and a sparse file over the
    limit are refused at once, before any byte is read; a link to a real image is followed."""
    import os
    import time

    from medapp.intake.limits import read_regular_file

    (tmp_path / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.png")
    with open(tmp_path / "sparse.png", "wb") as f:
        f.truncate(20 * 1024**3)  # 20 GB of holes: no disk used, but st_size says 20 GB
    png = encode(RNG.integers(0, 256, (40, 40), dtype=np.uint8), "PNG")
    (tmp_path / "real.png").write_bytes(png)
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    start = time.perf_counter()
    for name, message in (("zero.png", "not a regular file"), ("pipe.png", "not a regular file"),
                          ("sparse.png", "over the 128 MB limit")):
        with pytest.raises(MedAppError, match=message):
            load_image(tmp_path / name)
        with pytest.raises(MedAppError, match=message):
            read_regular_file(tmp_path / name, IntakeLimits())
    assert time.perf_counter() - start < 5
    assert load_image(tmp_path / "link.png").pixels.shape == (40, 40)


def test_predict_cli_refuses_devices_pipes_and_oversized_files_without_reading_them(tmp_path):
    import os

    (tmp_path / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.png")
    with open(tmp_path / "sparse.png", "wb") as f:
        f.truncate(20 * 1024**3)
    result = subprocess.run([sys.executable, "-m", "medapp", "predict", *(str(tmp_path / n) for n in
                             ("zero.png", "pipe.png", "sparse.png"))], capture_output=True, text=True, timeout=300,
                            cwd=PROJECT_ROOT, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.count("not a regular file") == 2 and "over the 128 MB limit" in result.stderr


@pytest.mark.parametrize("codec", ["jpeg", "j2k"])
def test_compressed_dicom_codestream_must_agree_with_rows_and_columns(codec):
    honest = load_image(compressed_dicom_declaring(codec, 256))  # the same file, unpatched in size, decodes
    assert honest.original_size == (256, 256)
    with pytest.raises(UnsupportedImageError, match="60000x60000 px.*possible decompression bomb"):
        load_image(compressed_dicom_declaring(codec, 60000))
    with pytest.raises(UnsupportedImageError, match="declares 400x400 px but the header says 256x256"):
        load_image(compressed_dicom_declaring(codec, 400))


def test_deeply_nested_sequences_are_refused_before_any_recursive_work():
    """Issue 12, item 3: 3,000 levels drove de-identification past 5 GB; a few levels are normal."""
    assert load_image(dicom_nested(5)).original_size == (64, 64)
    for depth in (40, 3000):
        with pytest.raises(UnsupportedImageError, match="nested more than 32 deep"):
            load_image(dicom_nested(depth))


def test_decompression_bombs_refused_within_200mb():
    """Peak memory of a fresh process that loads every bomb stays within 200 MB of its baseline: PNGs and a DICOM
    declaring too many pixels, and compressed DICOMs whose Rows/Columns say 256 but whose JPEG or JPEG 2000
    codestream says 60000 or 12000 (issue 12, item 1: the codestream's own header is checked before decoding)."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path[:0] = [{str(PROJECT_ROOT)!r}, {str(Path(__file__).parent)!r}]
        from intake_fixtures import compressed_dicom_declaring, png_declaring, make_dataset, dicom_bytes
        import numpy as np
        from medapp.intake.imaging import load_image
        from medapp.errors import UnsupportedImageError
        ds = make_dataset(np.zeros((8, 8), np.uint8)); ds.Rows = ds.Columns = 30000
        bombs = [png_declaring(30000, 30000), png_declaring(12000, 12000), dicom_bytes(ds),
                 *(compressed_dicom_declaring(codec, side) for codec in ("jpeg", "j2k") for side in (60000, 12000))]
        load_image(dicom_bytes(make_dataset(np.zeros((64, 64), np.uint8))))  # warm up imports before measuring
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for bomb in bombs:
            try:
                load_image(bomb)
            except UnsupportedImageError:
                pass
            else:
                raise SystemExit("bomb loaded")
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) < 200
