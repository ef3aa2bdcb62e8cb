//! What `grpc_latency` needs from its machine: query images, the listener's socket option, CPU
//! accounting and the report's number format.

use pixdex_indexer::decode::{DecodeLimits, decode_bytes};
use std::path::{Path, PathBuf};

/// Query images as JPEG bytes: up to 8 photos spread over the shared library, else generated pictures.
pub(crate) fn query_images(photos: &Path) -> anyhow::Result<(Vec<Vec<u8>>, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![photos.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    if !files.is_empty() {
        let step = files.len().div_ceil(8);
        let picked: Vec<&PathBuf> = files.iter().step_by(step).collect();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for path in picked {
            let bytes = std::fs::read(path)?;
            let d = decode_bytes(&bytes, DecodeLimits::default())?;
            sizes.push(format!(
                "{} {}x{} {} KB",
                path.strip_prefix(photos).unwrap_or(path).display(),
                d.image.width(),
                d.image.height(),
                bytes.len() / 1024
            ));
            out.push(bytes);
        }
        let note = format!("{} photos from {}: {}", out.len(), photos.display(), sizes.join(", "));
        return Ok((out, note));
    }
    // No photo library: stripes of seed-dependent frequency and colour, 640x480, JPEG quality 90.
    let out = (0..8u32)
        .map(|seed| {
            let img = image::RgbImage::from_fn(640, 480, |x, y| {
                let s = seed as f32;
                let v = |k: f32| {
                    (((x as f32 * (0.05 + 0.01 * k) + y as f32 * 0.03 * (s + 1.0)).sin() * 0.5 + 0.5) * 255.0) as u8
                };
                image::Rgb([v(s), v(s + 1.0), v(2.0 * s)])
            });
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&img)?;
            Ok(bytes)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((out, format!("NOTE: no photos in {}; 8 generated 640x480 JPEGs", photos.display())))
}

/// TCP_NODELAY on a listening socket (inherited by the sockets it accepts, on Linux).
pub(crate) fn set_nodelay(listener: &tokio::net::TcpListener) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(rc == 0, "setsockopt TCP_NODELAY: {}", std::io::Error::last_os_error());
    Ok(())
}

/// The whole machine's busy and stolen CPU seconds so far (all processes), from `/proc/stat`.
pub(crate) fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let j: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let (busy, steal) = (j.first()? + j.get(1)? + j.get(2)? + j.get(5)? + j.get(6)?, *j.get(7)?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then(|| (busy as f64 / hz, steal as f64 / hz))
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().into())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub(crate) fn ms(s: f64) -> String {
    format!("{:.2}", s * 1e3)
}
