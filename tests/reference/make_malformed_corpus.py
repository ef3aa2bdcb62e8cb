"""Writes tests/fixtures/malformed/: small image files that are cut, mislabelled, bomb-sized,
or unusual (16-bit, CMYK, animated, palette), and expected.tsv with what decoding each must give.

Run from the repository root with Pillow installed: python tests/reference/make_malformed_corpus.py
The files are committed; the fuzz tests (crates/pixdex-indexer/tests/fuzz_decode.rs) read them
and also use them as seeds for mutations.
"""

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

OUT = Path("tests/fixtures/malformed")


def picture(w, h, mode="RGB"):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(h) for x in range(w)])
    return img.convert(mode) if mode != "RGB" else img


def encoded(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(w, h):
    """A PNG whose IHDR claims w x h (valid CRCs) with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_with_size(w, h):
    """A real small JPEG whose SOF0 frame header is rewritten to claim w x h."""
    data = bytearray(encoded(picture(16, 16), "JPEG", quality=80))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, h, w)
    return bytes(data)


def gif_with_screen(w, h):
    data = bytearray(encoded(picture(8, 8).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, w, h)
    return bytes(data)


def bmp_with_size(w, h):
    data = bytearray(encoded(picture(4, 4), "BMP"))
    struct.pack_into("<ii", data, 18, w, h)
    return bytes(data)


def animated(fmt, **kw):
    frames = [picture(24, 16).rotate(90 * i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)
    return buf.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    jpeg = encoded(picture(64, 48), "JPEG", quality=90)
    png = encoded(picture(64, 48), "PNG")
    # name -> (bytes, expectation): "ok WxH" (upright size) or "error TEXT" (in the message).
    cases = {
        "truncated-third.jpg": (jpeg[: len(jpeg) // 3], "error truncated"),
        "truncated-no-eoi.jpg": (jpeg[:-2], "error truncated"),
        "truncated.png": (png[: len(png) * 2 // 3], "error cannot decode"),
        "truncated.gif": (encoded(picture(64, 48).convert("P"), "GIF")[:300], "error cannot decode"),
        "wrong-magic.png": (b"\x89PNX" + png[4:], "error cannot decode"),
        "png-named.jpg": (png, "ok 64x48"),
        "text.jpg": (b"this is not an image\n" * 4, "error cannot decode"),
        "empty.png": (b"", "error cannot decode"),
        "bomb-header.png": (png_with_header(30_000, 30_000), "error header claims"),
        "too-wide.png": (png_with_header(100_000, 100_000), "error side longer than"),
        "bomb-header.jpg": (jpeg_with_size(30_000, 30_000), "error header claims"),
        "too-wide.jpg": (jpeg_with_size(65_000, 65_000), "error side longer than"),
        "bomb-header.gif": (gif_with_screen(30_000, 30_000), "error header claims"),
        "too-wide.gif": (gif_with_screen(65_535, 8), "error side longer than"),
        "bomb-header.bmp": (bmp_with_size(30_000, 30_000), "error header claims"),
        "too-wide.bmp": (bmp_with_size(50_000, 2), "error side longer than"),
        "zero-width.png": (png_with_header(0, 48), "error cannot decode"),
        "sixteen-bit-gray.png": (encoded(picture(40, 30, "L").convert("I;16"), "PNG"), "ok 40x30"),
        "sixteen-bit-gray.tif": (encoded(picture(40, 30, "L").convert("I;16"), "TIFF"), "ok 40x30"),
        "cmyk.jpg": (encoded(picture(40, 30, "CMYK"), "JPEG", quality=90), "ok 40x30"),
        "palette.png": (encoded(picture(40, 30).convert("P"), "PNG"), "ok 40x30"),
        "gray-alpha.png": (encoded(picture(40, 30, "LA"), "PNG"), "ok 40x30"),
        "one-bit.png": (encoded(picture(40, 30, "1"), "PNG"), "ok 40x30"),
        "animated.gif": (animated("GIF"), "ok 24x16"),
        "animated.png": (animated("PNG"), "ok 24x16"),
        "animated.webp": (animated("WEBP", lossless=True), "ok 24x16"),
        "garbage-exif.jpg": (jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + jpeg[2:], "ok 64x48"),
        "lzw.tif": (encoded(picture(40, 30), "TIFF", compression="tiff_lzw"), "ok 40x30"),
        "corrupt-idat.png": (png[:60] + bytes(b ^ 0x5A for b in png[60:120]) + png[120:], "error cannot decode"),
    }
    lines = ["# name\texpected (ok WIDTHxHEIGHT, or error TEXT-IN-THE-MESSAGE); made by tests/reference/make_malformed_corpus.py"]
    for name, (data, expected) in sorted(cases.items()):
        (OUT / name).write_bytes(data)
        lines.append(f"{name}\t{expected}")
    (OUT / "expected.tsv").write_text("\n".join(lines) + "\n")
    print(f"{len(cases)} files, {sum(len(d) for d, _ in cases.values())} bytes")


if __name__ == "__main__":
    main()
