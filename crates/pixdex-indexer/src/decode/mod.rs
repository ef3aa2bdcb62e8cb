//! Decoding image files: format sniffed from content (not the extension), EXIF orientation
//! applied, memory bounded by decoder limits; large JPEGs for the index at a reduced DCT scale
//! ([`decode_bytes_at_least`]).

use image::{DynamicImage, ImageDecoder, ImageReader};
use std::io::{BufRead, Cursor, Seek};
use std::path::{Path, PathBuf};

mod jpeg_end;
mod scaled_jpeg;

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not an image this build can decode, are corrupt, or exceed the limits.
    #[error("cannot decode {what}: {source}")]
    Image {
        /// The file path, or `bytes` for in-memory input.
        what: String,
        /// The decoder's reason.
        source: image::ImageError,
    },
    /// A JPEG that ends before its end-of-image marker (cut short in a copy or an upload): the
    /// decoder would fill the missing rows with grey.
    #[error("{what} is truncated: the JPEG ends before its end-of-image marker")]
    Truncated {
        /// The file path, or `bytes`.
        what: String,
    },
    /// More pixels than [`DecodeLimits::max_pixels`], by its header.
    #[error("cannot decode {what}: its header claims {pixels} pixels, more than the limit of {limit}")]
    TooManyPixels {
        /// The file path, or `bytes`.
        what: String,
        /// Width × height.
        pixels: u64,
        /// The limit.
        limit: u64,
    },
    /// Wider or taller than [`DecodeLimits::max_side_px`], by its header.
    #[error("cannot decode {what}: its header claims a side longer than the limit of {limit} pixels")]
    TooWide {
        /// The file path, or `bytes`.
        what: String,
        /// The limit.
        limit: u32,
    },
    /// The image has no pixels.
    #[error("{what} has zero width or height")]
    Empty {
        /// The file path, or `bytes`.
        what: String,
    },
}

/// Decoder limits against decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side_px: u32,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc_bytes: u64,
    /// Largest image file read, in bytes.
    pub max_file_bytes: u64,
    /// Most pixels (width × height, from the header, before anything is decoded).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    /// 32k pixels a side, 100 megapixels, 1 GiB of decoder allocations and 512 MiB files: a
    /// 100-megapixel RGB photo (300 MB) decodes, a bomb does not.
    fn default() -> Self {
        Self { max_side_px: 32_768, max_alloc_bytes: 1 << 30, max_file_bytes: 512 << 20, max_pixels: 100_000_000 }
    }
}

/// Width × height from the image's header (nothing decoded), if the format is known.
pub fn header_pixels(bytes: &[u8]) -> Option<u64> {
    let (w, h) = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()?;
    Some(u64::from(w) * u64::from(h))
}

/// A decoded image, upright.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The pixels with EXIF orientation applied.
    pub image: DynamicImage,
    /// The EXIF orientation that was applied (`NoTransforms` when absent).
    pub orientation: image::metadata::Orientation,
    /// The upright image's full-resolution size: `image`'s size, unless it was decoded at a
    /// reduced scale ([`decode_bytes_at_least`]).
    pub full_size: (u32, u32),
}

/// The smallest upright image, in pixels, that a use of it needs: a long side and a short side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinSize {
    /// At least this long on the long side (0: any size, decode in full).
    pub long: u32,
    /// At least this long on the short side.
    pub short: u32,
}

/// Decodes in-memory bytes for model inputs that need at most `min`: a JPEG at least twice
/// that size is decoded at 1/2, 1/4 or 1/8 scale in the DCT (still covering `min`), anything
/// else in full. Boxes and records use [`DecodedImage::full_size`].
pub fn decode_bytes_at_least(bytes: &[u8], limits: DecodeLimits, min: MinSize) -> Result<DecodedImage, DecodeError> {
    check_whole(bytes, "bytes")?;
    match scaled_jpeg::decode(bytes, limits, min) {
        Some(decoded) => Ok(decoded),
        None => decode_reader(ImageReader::new(Cursor::new(bytes)), limits, "bytes"),
    }
}

/// Decodes a file (following a symbolic link: the path is the user's own choice).
pub fn decode_path(path: &Path, limits: DecodeLimits) -> Result<DecodedImage, DecodeError> {
    let bytes = read_image_file(path, limits.max_file_bytes, true, &[])
        .map_err(|source| DecodeError::Io { path: path.to_path_buf(), source })?;
    let what = path.display().to_string();
    check_whole(&bytes, &what)?;
    decode_reader(ImageReader::new(Cursor::new(bytes)), limits, &what)
}

/// Decodes in-memory bytes (an upload).
pub fn decode_bytes(bytes: &[u8], limits: DecodeLimits) -> Result<DecodedImage, DecodeError> {
    check_whole(bytes, "bytes")?;
    decode_reader(ImageReader::new(Cursor::new(bytes)), limits, "bytes")
}

/// Opens an image file for reading without blocking (a FIFO put in a file's place does not hang
/// the reader) and checks on the open handle that it is a regular file. Unless `follow_links`, a
/// symbolic link in the file's place is refused (`O_NOFOLLOW`), and when `confine_to` names
/// folders the file actually opened must lie in one of them (its path as the kernel resolved it,
/// on Linux): a folder swapped for a link after the crawl cannot lead outside the crawled roots.
pub fn open_image_file(path: &Path, follow_links: bool, confine_to: &[PathBuf]) -> std::io::Result<std::fs::File> {
    use std::io::{Error, ErrorKind};
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = if follow_links { 0 } else { libc::O_NOFOLLOW };
        open.custom_flags(libc::O_NONBLOCK | nofollow);
    }
    let file = open.open(path).map_err(|e| {
        #[cfg(unix)]
        if !follow_links && e.raw_os_error() == Some(libc::ELOOP) {
            return Error::new(ErrorKind::InvalidInput, "a symbolic link (links are not followed)");
        }
        e
    })?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    #[cfg(target_os = "linux")]
    if !confine_to.is_empty() {
        use std::os::fd::AsRawFd;
        if let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            && !confine_to.iter().any(|root| real.starts_with(root))
        {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("outside the indexed folders: it resolves to {}", real.display()),
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = confine_to;
    Ok(file)
}

/// Reads an image file opened by [`open_image_file`], whole, if it is at most `max_bytes`.
pub fn read_image_file(
    path: &Path,
    max_bytes: u64,
    follow_links: bool,
    confine_to: &[PathBuf],
) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let file = open_image_file(path, follow_links, confine_to)?;
    let meta = file.metadata()?;
    if meta.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes: larger than the {} MiB limit for an image file", meta.len(), max_bytes >> 20),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the check: read no more than the limit.
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::new(ErrorKind::InvalidInput, "the file grew past the image file size limit"));
    }
    Ok(bytes)
}

/// A JPEG must reach its end marker (other formats' decoders fail on a cut file themselves).
fn check_whole(bytes: &[u8], what: &str) -> Result<(), DecodeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) && !jpeg_end::reaches_end_marker(bytes) {
        return Err(DecodeError::Truncated { what: what.to_string() });
    }
    Ok(())
}

fn decode_reader<R: BufRead + Seek>(
    mut reader: ImageReader<R>,
    limits: DecodeLimits,
    what: &str,
) -> Result<DecodedImage, DecodeError> {
    let image_err = |source| DecodeError::Image { what: what.to_string(), source };
    // Sniff the format from the magic bytes: extensions lie.
    reader = reader.with_guessed_format().map_err(|e| image_err(image::ImageError::IoError(e)))?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side_px);
    l.max_image_height = Some(limits.max_side_px);
    l.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(l.clone());
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(l) if l.kind() == image::error::LimitErrorKind::DimensionError => {
            DecodeError::TooWide { what: what.to_string(), limit: limits.max_side_px }
        }
        e => image_err(e),
    })?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(DecodeError::TooManyPixels { what: what.to_string(), pixels, limit: limits.max_pixels });
    }
    // `from_decoder` does not charge the pixel buffer against `max_alloc` (only
    // `ImageReader::decode` does), so reserve it here before anything is allocated.
    l.reserve(decoder.total_bytes()).map_err(image_err)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_err)?;
    if image.width() == 0 || image.height() == 0 {
        return Err(DecodeError::Empty { what: what.to_string() });
    }
    image.apply_orientation(orientation);
    let full_size = (image.width(), image.height());
    Ok(DecodedImage { image, orientation, full_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn sniffs_content_not_extension() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("actually_png.jpg");
        std::fs::write(&p, png_bytes(5, 3)).unwrap();
        let d = decode_path(&p, DecodeLimits::default()).unwrap();
        assert_eq!((d.image.width(), d.image.height()), (5, 3));
    }

    #[test]
    fn corrupt_truncated_and_empty_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        assert!(decode_path(&empty, DecodeLimits::default()).is_err());
        let bytes = png_bytes(40, 40);
        assert!(decode_bytes(&bytes[..bytes.len() / 2], DecodeLimits::default()).is_err());
        // A JPEG cut to a third decodes (grey rows) unless it is checked: refused everywhere.
        let jpeg =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio/images/photo.jpg"))
                .unwrap();
        let cut = &jpeg[..jpeg.len() / 3];
        let min = MinSize { long: 16, short: 16 };
        for result in
            [decode_bytes(cut, DecodeLimits::default()), decode_bytes_at_least(cut, DecodeLimits::default(), min)]
        {
            assert!(matches!(result, Err(DecodeError::Truncated { .. })), "{:?}", result.map(|d| d.full_size));
        }
        let file = dir.path().join("cut.jpg");
        std::fs::write(&file, cut).unwrap();
        let e = decode_path(&file, DecodeLimits::default()).unwrap_err();
        assert!(e.to_string().contains("cut.jpg is truncated"), "{e}");
        assert!(decode_bytes(b"not an image at all", DecodeLimits::default()).is_err());
        assert!(matches!(
            decode_path(&dir.path().join("missing.png"), DecodeLimits::default()),
            Err(DecodeError::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_within_the_size_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("p.png");
        std::fs::write(&photo, png_bytes(8, 8)).unwrap();
        let len = std::fs::metadata(&photo).unwrap().len();
        assert_eq!(read_image_file(&photo, len, false, &[]).unwrap().len() as u64, len);
        let e = read_image_file(&photo, len - 1, false, &[]).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        // A link in a file's place: refused unless links are followed.
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&photo, &link).unwrap();
        let e = read_image_file(&link, len, false, &[]).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(read_image_file(&link, len, true, &[]).is_ok());
        // A FIFO answers at once instead of waiting for a writer; so does a folder.
        let fifo = dir.path().join("fifo.jpg");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_image_file(&fifo, 1 << 20, false, &[]).unwrap_err().to_string().contains("regular"));
        assert!(read_image_file(dir.path(), 1 << 20, false, &[]).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_reached_through_a_swapped_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("album")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("album/p.png"), png_bytes(8, 8)).unwrap();
        std::fs::write(outside.join("p.png"), png_bytes(8, 8)).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let confine = [root.clone()];
        assert!(read_image_file(&root.join("album/p.png"), 1 << 20, false, &confine).is_ok());
        // After the crawl, `album` becomes a link to a folder outside the root: O_NOFOLLOW only
        // guards the last component, the resolved path of the open file guards the rest.
        std::fs::remove_dir_all(root.join("album")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("album")).unwrap();
        let e = read_image_file(&root.join("album/p.png"), 1 << 20, false, &confine).unwrap_err();
        assert!(e.to_string().contains("outside the indexed folders"), "{e}");
        assert!(read_image_file(&root.join("album/p.png"), 1 << 20, false, &[]).is_ok(), "unconfined");
    }

    #[test]
    fn exif_orientation_is_applied() {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio/images");
        let rotated = decode_path(&images.join("exif_rot6.jpg"), DecodeLimits::default()).unwrap();
        assert_eq!(rotated.orientation, image::metadata::Orientation::Rotate90);
        // The upright PNG is PIL's `exif_transpose` of the same JPEG (libjpeg-turbo pixels), so
        // the images agree up to JPEG decoder differences.
        let upright = image::open(images.join("exif_rot6_upright.png")).unwrap().to_rgb8();
        let ours = rotated.image.to_rgb8();
        assert_eq!(ours.dimensions(), upright.dimensions());
        assert_eq!(ours.dimensions(), (24, 40));
        let diff: f64 = ours.as_raw().iter().zip(upright.as_raw()).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>()
            / ours.as_raw().len() as f64;
        assert!(diff < 1.0, "mean |Δ| {diff}");
    }

    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y) / 9) as u8]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// A JPEG at least twice the needed size comes at the smallest DCT scale that covers it, with
    /// its full size kept; a small one, another format, or no need at all decode in full.
    #[test]
    fn large_jpegs_decode_at_a_reduced_scale() {
        let big = jpeg_bytes(1600, 1200);
        let need = MinSize { long: 400, short: 200 };
        let d = decode_bytes_at_least(&big, DecodeLimits::default(), need).unwrap();
        assert_eq!((d.image.width(), d.image.height()), (400, 300), "1/4 scale covers 400 × 200");
        assert_eq!(d.full_size, (1600, 1200));
        let need = MinSize { long: 500, short: 200 };
        let d = decode_bytes_at_least(&big, DecodeLimits::default(), need).unwrap();
        assert_eq!((d.image.width(), d.image.height()), (800, 600), "1/2 scale is the smallest covering 500");
        let full = decode_bytes_at_least(&big, DecodeLimits::default(), MinSize::default()).unwrap();
        assert_eq!((full.image.width(), full.image.height(), full.full_size), (1600, 1200, (1600, 1200)));
        let small = decode_bytes_at_least(&jpeg_bytes(600, 450), DecodeLimits::default(), need).unwrap();
        assert_eq!((small.image.width(), small.image.height()), (600, 450), "less than twice the need: full");
        let png = decode_bytes_at_least(&png_bytes(40, 30), DecodeLimits::default(), MinSize { long: 4, short: 3 });
        assert_eq!(png.unwrap().full_size, (40, 30));
        // The reduced decode is the full one, smaller: means of 8×8 blocks agree closely.
        let scaled = decode_bytes_at_least(&big, DecodeLimits::default(), MinSize { long: 200, short: 100 }).unwrap();
        let (s, f) = (scaled.image.to_rgb8(), full.image.to_rgb8());
        assert_eq!(s.dimensions(), (200, 150));
        let mut worst = 0f64;
        for (x, y, px) in s.enumerate_pixels() {
            for c in 0..3 {
                let mean = (0..64).map(|i| f.get_pixel(x * 8 + i % 8, y * 8 + i / 8).0[c] as f64).sum::<f64>() / 64.0;
                worst = worst.max((px.0[c] as f64 - mean).abs());
            }
        }
        assert!(worst < 6.0, "max |Δ| against the full decode's block means: {worst}");
    }

    /// The EXIF orientation applies to a reduced decode too, and the full size is the upright one.
    #[test]
    fn reduced_decodes_are_upright() {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio/images");
        let bytes = std::fs::read(images.join("exif_rot6.jpg")).unwrap();
        let d = decode_bytes_at_least(&bytes, DecodeLimits::default(), MinSize { long: 12, short: 6 }).unwrap();
        assert_eq!(d.orientation, image::metadata::Orientation::Rotate90);
        assert_eq!(d.full_size, (24, 40));
        assert_eq!((d.image.width(), d.image.height()), (12, 20));
    }

    #[test]
    fn limits_refuse_oversized_images() {
        let limits = DecodeLimits { max_side_px: 16, ..DecodeLimits::default() };
        assert!(decode_bytes(&png_bytes(17, 4), limits).is_err());
        assert!(decode_bytes(&png_bytes(16, 4), limits).is_ok());
        let limits = DecodeLimits { max_pixels: 399, ..DecodeLimits::default() };
        let e = decode_bytes(&png_bytes(20, 20), limits).unwrap_err();
        assert!(matches!(e, DecodeError::TooManyPixels { pixels: 400, limit: 399, .. }), "{e}");
        assert!(decode_bytes(&png_bytes(19, 21), limits).is_ok());
        assert_eq!(header_pixels(&png_bytes(20, 21)), Some(420));
        assert_eq!(header_pixels(b"not an image"), None);
        let limits = DecodeLimits { max_alloc_bytes: 1000, ..DecodeLimits::default() };
        assert!(decode_bytes(&png_bytes(20, 20), limits).is_err(), "1200 pixel bytes exceed 1000");
    }

    /// A tiny file whose header claims 30000 × 30000 RGBA16 (7.2 GB) must be refused before any
    /// allocation, not abort the process.
    #[test]
    fn decompression_bomb_header_is_refused() {
        let mut png = png_bytes(1, 1);
        // IHDR data starts at byte 16: width, height (big-endian), bit depth 16, colour type 6.
        png[16..24].copy_from_slice(&[0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30]);
        png[24] = 16;
        png[25] = 6;
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_bytes(&png, DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TooManyPixels { pixels: 900_000_000, .. }), "{err}");
        // Without the pixel limit, the allocation limit still refuses it.
        let err = decode_bytes(&png, DecodeLimits { max_pixels: u64::MAX, ..DecodeLimits::default() }).unwrap_err();
        assert!(matches!(err, DecodeError::Image { .. }), "{err}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
