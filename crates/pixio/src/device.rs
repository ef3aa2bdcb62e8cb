//! Device and dtype choice: CPU everywhere, CUDA when built with the `cuda` feature.

use candle_core::{DType, Device};
use std::str::FromStr;

use crate::error::{Error, Result};

/// Where to run the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The host CPU (all cores through rayon).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;

    /// `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| Error::Device(format!("unknown device `{s}` (expected cpu, cuda or cuda:N)"))),
        }
    }
}

impl DeviceChoice {
    /// Opens the device. A CUDA choice in a build without the `cuda` feature is an error that
    /// says how to get one, never a silent fall-back to the CPU. Every error is one line.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::Device(
        "this build has no CUDA support; build one with deploy/build-cuda.sh (candle's `cuda` feature) or use --device cpu"
            .into(),
    ))
}

/// The CUDA libraries besides the driver that a build from deploy/build-cuda.sh loads at run time
/// (their sonames, e.g. `libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13`, set
/// by the script when it compiles). Unset in a build against a system toolkit, which links them
/// the usual way (the loader then refuses to start the binary without them).
#[cfg(feature = "cuda")]
const RUNTIME_LIBS: Option<&str> = option_env!("PIXDEX_CUDA_RUNTIME_LIBS");

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    // The CUDA build links no CUDA library (deploy/cuda-shims.sh): each is dlopened on its first
    // call, and a missing one would surface as a bare status code deep in candle (and a line on
    // stderr from the shim). Look for them first, so that a machine without the NVIDIA driver or
    // without the CUDA libraries gets one sentence instead.
    if !loadable("libcuda.so.1") {
        return Err(Error::Device(
            "no CUDA driver found (libcuda.so.1): install the NVIDIA driver or use --device cpu".into(),
        ));
    }
    if let Some(lib) = RUNTIME_LIBS.unwrap_or_default().split_whitespace().find(|lib| !loadable(lib)) {
        return Err(Error::Device(format!(
            "CUDA library {lib} not found: put the CUDA libraries (cuBLAS, cuBLASLt, cuRAND, NVRTC; \
             e.g. the pip wheels' nvidia/cu13/lib) on LD_LIBRARY_PATH or use --device cpu"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| Error::Device(cuda_open_error(ordinal, &e.to_string())))
}

/// Whether `soname` can be dlopened (through LD_LIBRARY_PATH and the loader cache, as the shims
/// will). A loaded library is deliberately never closed: the shims open the same one again on
/// first use, and the driver and the CUDA libraries stay loaded for the life of the process.
#[cfg(feature = "cuda")]
fn loadable(soname: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(soname) else { return false };
    // SAFETY: dlopen with a NUL-terminated name; the handle is only tested for null.
    !unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) }.is_null()
}

/// One line for a failed `Device::new_cuda`: candle's message is cudarc's
/// `DriverError(CUDA_ERROR_…, "…")`, possibly followed by a backtrace.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn cuda_open_error(ordinal: usize, err: &str) -> String {
    let first = err.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown error");
    if first.contains("CUDA_ERROR_NO_DEVICE") {
        "no CUDA GPU found (the NVIDIA driver is installed but sees no device): use --device cpu".into()
    } else if first.contains("CUDA_ERROR_INVALID_DEVICE") {
        format!("there is no CUDA device {ordinal} (nvidia-smi lists the GPUs)")
    } else if first.contains("CUDA_ERROR_STUB_LIBRARY") {
        // What the link shims return for a driver function libcuda.so.1 does not export (a driver
        // older than the CUDA version built for), and what NVIDIA's own stub library returns.
        format!("cannot open CUDA device {ordinal}: the NVIDIA driver is too old for this build or a stub ({first})")
    } else {
        format!("cannot open CUDA device {ordinal}: {first}")
    }
}

/// The compute dtype to use on `device` when the user did not choose: f32 on the CPU (exact to
/// the reference), bf16 on CUDA (tensor cores; LayerNorm and softmax still run in f32).
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() { DType::F32 } else { DType::BF16 }
}

/// Parses `f32`, `f16` or `bf16`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        _ => Err(Error::Config(format!("unknown dtype `{s}` (expected f32, f16 or bf16)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:2".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(2));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("int8").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("deploy/build-cuda.sh"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn cuda_open_errors_are_one_line() {
        let backtrace =
            "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")\n   0: candle_core::error\n";
        assert_eq!(
            cuda_open_error(0, backtrace),
            "no CUDA GPU found (the NVIDIA driver is installed but sees no device): use --device cpu"
        );
        let other = cuda_open_error(1, "\nDriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")\nmore");
        assert_eq!(other, "cannot open CUDA device 1: DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
        assert!(cuda_open_error(3, "DriverError(CUDA_ERROR_INVALID_DEVICE, \"x\")").contains("no CUDA device 3"));
    }
}
