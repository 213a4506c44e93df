"""Hostile image files through the one decoder (marginface.data.decoding): every mode decodes to
the pixels it shows, broken files are named, nothing is silently misread."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from marginface.data.align import load_aligned
from marginface.data.decoding import ALPHA_BACKGROUND, BadImageError, decode_image
from marginface.detect.images import load_photo

fault = pytest.mark.fault


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(np.int64)


@fault(kind="image (PNG)", fault="16-bit greyscale",
       behaviour="samples scaled v*255/65535 to 8-bit grey (not clipped to white)")
def test_16bit_greyscale_png_is_scaled(tmp_path):
    values = np.array([[0, 257, 32768, 65535], [1000, 20000, 40000, 60000]], dtype=np.uint16)
    values = np.repeat(np.repeat(values, 8, axis=0), 8, axis=1)  # 16 x 32
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    pixels = _rgb(decode_image(path))
    expected = np.rint(values * 255.0 / 65535.0).astype(np.int64)
    np.testing.assert_array_equal(pixels[..., 0], expected)
    np.testing.assert_array_equal(pixels[..., 1], pixels[..., 2])
    assert pixels.max() == 255 and pixels.min() == 0  # not all white


@fault(kind="image (PNG)", fault="dark 16-bit greyscale (all samples <= 255)",
       behaviour="still scaled as 16-bit: near black, not read as 8-bit")
def test_dark_16bit_png_is_not_taken_as_8bit(tmp_path):
    values = np.full((16, 16), 200, dtype=np.uint16)
    path = tmp_path / "dark.png"
    Image.fromarray(values).save(path)
    assert _rgb(decode_image(path)).max() == 1  # round(200 * 255 / 65535)


@fault(kind="image (PNG)", fault="8-bit greyscale", behaviour="grey replicated to R=G=B")
def test_8bit_greyscale(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    pixels = _rgb(decode_image(path))
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], grey)


@fault(kind="image (JPEG)", fault="CMYK JPEG",
       behaviour="converted to RGB (red stays red, not inverted)")
def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in ink
    cmyk.paste((255, 0, 255, 0), (0, 0, 16, 32))  # left half: pure green
    path = tmp_path / "print.jpg"
    cmyk.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    pixels = _rgb(decode_image(path))
    np.testing.assert_allclose(pixels[8, 24], [255, 0, 0], atol=12)
    np.testing.assert_allclose(pixels[8, 4], [0, 255, 0], atol=12)


@fault(kind="image (PNG)", fault="RGBA with transparency",
       behaviour="composited onto white: transparent -> white, half -> blend")
def test_rgba_composited_onto_white(tmp_path):
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # stored colour (200, 0, 0)
    rgba[:, :4, 3] = 0  # transparent
    rgba[:, 4:8, 3] = 128  # half
    rgba[:, 8:, 3] = 255  # opaque
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = _rgb(decode_image(path))
    np.testing.assert_array_equal(pixels[0, 0], ALPHA_BACKGROUND)
    np.testing.assert_array_equal(pixels[0, 12], [200, 0, 0])
    half = 128 / 255
    np.testing.assert_allclose(pixels[0, 6], [200 * half + 255 * (1 - half),
                                              255 * (1 - half), 255 * (1 - half)], atol=1.5)


@fault(kind="image (PNG)", fault="greyscale with alpha (LA)",
       behaviour="composited onto white")
def test_la_composited_onto_white(tmp_path):
    la = np.zeros((16, 16, 2), dtype=np.uint8)
    la[..., 0] = 40
    la[:8, :, 1] = 0
    la[8:, :, 1] = 255
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    pixels = _rgb(decode_image(path))
    np.testing.assert_array_equal(pixels[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(pixels[12, 0], [40, 40, 40])


@fault(kind="image (PNG/GIF)", fault="palette image without transparency",
       behaviour="palette colours looked up exactly")
def test_palette_without_transparency(tmp_path):
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 10, 120, 230, 250, 5, 7] + [0] * (256 * 3 - 9))
    image.paste(2, (0, 0, 8, 16))
    path = tmp_path / "palette.png"
    image.save(path)
    pixels = _rgb(decode_image(path))
    np.testing.assert_array_equal(pixels[0, 12], [10, 120, 230])
    np.testing.assert_array_equal(pixels[0, 2], [250, 5, 7])


@fault(kind="image (PNG/GIF)", fault="palette image with a transparent index",
       behaviour="transparent index composited onto white, other colours exact")
@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency(tmp_path, suffix):
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 10, 120, 230, 250, 5, 7] + [0] * (256 * 3 - 9))
    image.paste(2, (0, 0, 8, 16))
    path = tmp_path / f"palette_t{suffix}"
    image.save(path, transparency=2)
    assert "transparency" in Image.open(path).info
    pixels = _rgb(decode_image(path))
    np.testing.assert_array_equal(pixels[0, 12], [10, 120, 230])
    np.testing.assert_array_equal(pixels[0, 2], [255, 255, 255])


@fault(kind="image (JPEG)", fault="EXIF orientation tag (rotated 90 degrees)",
       behaviour="turned upright: the decoded pixels are the upright picture")
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = np.zeros((24, 40, 3), dtype=np.uint8)  # landscape, red block top-left
    upright[:8, :10] = (255, 0, 0)
    upright[16:, 30:] = (0, 0, 255)
    # store it the way a camera would: pixels rotated, tag saying how to turn them back
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
              8: Image.Transpose.ROTATE_270}[orientation]
    image = Image.fromarray(upright).transpose(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"camera{orientation}.jpg"
    image.save(path, quality=98, exif=exif)
    pixels = _rgb(decode_image(path))
    assert pixels.shape == (24, 40, 3)
    np.testing.assert_allclose(pixels[3, 4], [255, 0, 0], atol=30)
    np.testing.assert_allclose(pixels[20, 36], [0, 0, 255], atol=30)
    # the detector's decoder and the alignment's are the same one
    np.testing.assert_array_equal(np.asarray(load_photo(path)), pixels)


@fault(kind="image (JPEG)", fault="EXIF-rotated photo aligned from landmarks (draft decode)",
       behaviour="landmarks read in the upright picture; the reduced JPEG decode keeps them")
def test_exif_rotated_jpeg_aligns_in_upright_coordinates(tmp_path):
    from marginface.data.align import template_points

    template = template_points("arcface_112x112")
    scale = 4.0  # the face is 4x the template: the JPEG is decoded at 1/2 or 1/4
    points = template * scale + [40.0, 30.0]
    upright = np.zeros((600, 520, 3), dtype=np.uint8)
    for x, y in points:
        upright[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, quality=95,
                                                                         exif=exif)
    aligned, method = load_aligned(path, "arcface_112x112", points)
    assert method == "landmarks"
    grey = np.asarray(aligned, dtype=np.float64).mean(axis=2)
    for x, y in template:
        ys, xs = np.mgrid[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5]
        weights = grey[ys, xs]
        centre = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        assert np.linalg.norm(centre - [x, y]) < 1.5


@fault(kind="image file", fault="truncated JPEG",
       behaviour="BadImageError naming the file (no half-grey image)")
def test_truncated_jpeg_is_named(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"cut\.jpg.*cannot read"):
        decode_image(path)


@fault(kind="image file", fault="zero-byte file", behaviour="BadImageError naming the file")
def test_zero_byte_image_is_named(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match=r"empty\.png.*cannot read"):
        decode_image(path)


@fault(kind="image file", fault="text file named .jpg", behaviour="BadImageError naming it")
def test_text_named_jpg_is_named(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(BadImageError, match=r"notes\.jpg.*cannot read"):
        decode_image(path)


@fault(kind="image file", fault="a directory named like an image",
       behaviour="BadImageError saying it is a directory")
def test_directory_named_jpg(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(BadImageError, match=r"folder\.jpg.*is a directory"):
        decode_image(tmp_path / "folder.jpg")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@fault(kind="image (PNG)", fault="decompression bomb: a tiny file announcing 10^10 pixels",
       behaviour="BadImageError from the header, nothing allocated")
@pytest.mark.parametrize("side", [100_000, 10_000])
def test_decompression_bomb_refused_from_header(tmp_path, side):
    # 10_000^2 = 1e8 pixels is above Pillow's limit but below twice it, where Pillow itself
    # only warns and goes on to allocate 300 MB
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    assert path.stat().st_size < 200
    with pytest.raises(BadImageError, match=r"bomb\.png.*(announces|decompression bomb)"):
        decode_image(path)
    with pytest.raises(BadImageError, match=r"bomb\.png"):
        load_aligned(path, "arcface_112x112", allow_center_crop=True)


@fault(kind="image (array)", fault="float array instead of uint8",
       behaviour="BadImageError naming the dtype and shape")
def test_wrong_array_dtype():
    with pytest.raises(BadImageError, match="uint8"):
        decode_image(np.zeros((20, 20, 3), dtype=np.float32))


@fault(kind="image (TIFF)", fault="32-bit float greyscale in 0..1",
       behaviour="scaled to 0..255")
def test_float_image_in_unit_range(tmp_path):
    values = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    path = tmp_path / "float.tif"
    Image.fromarray(values, "F").save(path)
    pixels = _rgb(decode_image(path))
    np.testing.assert_array_equal(pixels[..., 0], np.rint(values * 255).astype(np.int64))


@fault(kind="landmarks", fault="NaN or coinciding landmarks for an image",
       behaviour="ValueError naming the image and the problem")
@pytest.mark.parametrize(("points", "problem"), [
    (np.full((5, 2), np.nan), "finite"), (np.full((5, 2), 50.0), "degenerate")])
def test_bad_landmarks_name_the_image(tmp_path, points, problem):
    path = _photo(tmp_path / "face.jpg")
    with pytest.raises(ValueError, match=rf"face\.jpg.*{problem}"):
        load_aligned(path, "arcface_112x112", points)


def _photo(path, size_wh=(200, 160)):
    pixels = np.random.default_rng(0).integers(0, 255, (size_wh[1], size_wh[0], 3), np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix == ".png" else None)
    return path


@fault(kind="image file", fault="PNG content in a file named .jpg",
       behaviour="decoded by content, pixels exact")
def test_png_named_jpg(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 255, (20, 30, 3), np.uint8)
    path = tmp_path / "really_png.jpg"
    Image.fromarray(pixels).save(path, format="PNG")
    np.testing.assert_array_equal(np.asarray(decode_image(path)), pixels)


@fault(kind="image file", fault="5000x1 sliver (one side under 16 px)",
       behaviour="BadImageError 'too small' from the header, before decoding")
def test_sliver_is_too_small(tmp_path):
    path = tmp_path / "sliver.png"
    Image.new("RGB", (5000, 1)).save(path)
    with pytest.raises(BadImageError, match=r"sliver\.png: image is 5000x1, too small"):
        load_aligned(path, "arcface_112x112")
    with pytest.raises(BadImageError, match="too small"):
        load_photo(path)


@fault(kind="image (GIF)", fault="animated GIF", behaviour="the first frame is used")
def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((200, 10, 10), (10, 200, 10))]
    path = tmp_path / "moving.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixels = _rgb(decode_image(path))
    np.testing.assert_allclose(pixels[10, 10], [200, 10, 10], atol=8)


def _png(width: int, height: int, colour_type: int, samples: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (Pillow writes no 48-bit RGB or 16-bit LA)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@fault(kind="image (PNG)", fault="48-bit RGB and 16-bit grey+alpha",
       behaviour="8-bit within 1 of v*255/65535; alpha composited onto white")
def test_16bit_rgb_and_la_png():
    rgb = np.array([[[65535, 0, 32768], [257, 1000, 60000]]] * 16 * 8).reshape(16, 16, 3)
    pixels = _rgb(decode_image(_png(16, 16, 2, rgb)))
    np.testing.assert_allclose(pixels, rgb * 255.0 / 65535.0, atol=1.0)
    la = np.zeros((16, 16, 2))
    la[..., 0] = 30000
    la[:, :8, 1] = 65535  # opaque grey
    pixels = _rgb(decode_image(_png(16, 16, 4, la)))
    np.testing.assert_allclose(pixels[0, 0], [30000 * 255 / 65535] * 3, atol=1.0)
    np.testing.assert_array_equal(pixels[0, 12], [255, 255, 255])  # transparent: white
