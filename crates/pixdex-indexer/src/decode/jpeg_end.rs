//! Whether a JPEG is whole: its marker structure reaches the end-of-image marker. A JPEG cut
//! short decodes without an error (the decoder fills the missing rows with grey), so without
//! this check a truncated upload or half-copied file would be embedded as a different picture.
//!
//! The walk follows segment lengths (so an EXIF thumbnail's own end marker is skipped), and
//! scans entropy-coded data for the next marker (`FF 00` is a stuffed byte, `FF D0`–`FF D7`
//! restart markers). Bytes after the end marker (a motion photo's video, a maker trailer) are
//! ignored.

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

/// Whether `bytes` (starting `FF D8`) reach an end-of-image marker through the JPEG's segments.
pub(super) fn reaches_end_marker(bytes: &[u8]) -> bool {
    let mut i = 2;
    loop {
        // The next marker: 0xFF, then fill bytes 0xFF, then its code. Bytes that are not a
        // marker where one belongs are skipped, as decoders do.
        let Some(ff) = bytes.get(i..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)) else { return false };
        let mut j = i + ff;
        while bytes.get(j) == Some(&0xFF) {
            j += 1;
        }
        let Some(&code) = bytes.get(j) else { return false };
        match code {
            EOI => return true,
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 | SOI => i = j + 1,
            _ => {
                let Some(len) = bytes.get(j + 1..j + 3).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    return false;
                };
                if len < 2 {
                    return false;
                }
                i = j + 1 + len;
                if code == SOS {
                    match next_marker_after_scan(bytes, i) {
                        Some(at) => i = at,
                        None => return false,
                    }
                }
            }
        }
    }
}

/// Where the entropy-coded data from `from` ends: the next 0xFF that starts a marker (not a
/// stuffed 0x00 nor a restart marker).
fn next_marker_after_scan(bytes: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    loop {
        k += bytes.get(k..)?.iter().position(|&b| b == 0xFF)?;
        match bytes.get(k + 1)? {
            0x00 | 0xD0..=0xD7 | 0xFF => k += 1,
            _ => return Some(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
        out
    }

    #[test]
    fn whole_files_reach_the_end_marker_and_cut_ones_do_not() {
        let whole = jpeg(96, 64);
        assert!(reaches_end_marker(&whole));
        for cut in [whole.len() - 1, whole.len() - 2, whole.len() * 2 / 3, whole.len() / 3, 200, 3] {
            assert!(!reaches_end_marker(&whole[..cut]), "cut at {cut} of {}", whole.len());
        }
        // A trailer after the end (a motion photo's video) does not matter.
        let mut trailed = whole.clone();
        trailed.extend_from_slice(b"\x00\x00\x00\x18ftypmp42 some video bytes \xff\xd8");
        assert!(reaches_end_marker(&trailed));
    }

    #[test]
    fn an_embedded_thumbnail_end_marker_is_not_the_end() {
        // An APP1 segment holding a whole thumbnail JPEG, then the main image cut short.
        let thumb = jpeg(8, 8);
        let main = jpeg(64, 48);
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(&thumb);
        let mut file = main[..2].to_vec();
        file.extend_from_slice(&app1);
        file.extend_from_slice(&main[2..]);
        assert!(reaches_end_marker(&file));
        assert!(!reaches_end_marker(&file[..file.len() - 10]));
    }

    /// Every JPEG under `dir` (recursively) is whole, and not once cut to a third.
    fn every_jpeg_is_whole(dir: &std::path::Path) -> usize {
        let mut seen = 0;
        for entry in walkdir::WalkDir::new(dir) {
            let path = entry.unwrap().into_path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(&[0xFF, 0xD8]) {
                assert!(reaches_end_marker(&bytes), "{}", path.display());
                assert!(!reaches_end_marker(&bytes[..bytes.len() / 3]), "{}", path.display());
                seen += 1;
            }
        }
        seen
    }

    #[test]
    fn every_fixture_jpeg_is_whole() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio/images");
        assert!(every_jpeg_is_whole(&dir) > 0, "no JPEG fixtures in {}", dir.display());
    }

    /// Real camera and web JPEGs (EXIF thumbnails, progressive scans, restart markers).
    #[test]
    fn every_shared_photo_is_whole() {
        let shared = std::env::var_os("PIXDEX_SHARED_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
        let photos = shared.join("data/photos");
        if !photos.is_dir() {
            assert!(std::env::var("PIXDEX_REQUIRE_SHARED_DATA").as_deref() != Ok("1"), "no {}", photos.display());
            eprintln!("NOTE: skipping the shared photos: no {} (set PIXDEX_SHARED_DIR)", photos.display());
            return;
        }
        assert!(every_jpeg_is_whole(&photos) > 0, "no JPEGs in {}", photos.display());
    }
}
