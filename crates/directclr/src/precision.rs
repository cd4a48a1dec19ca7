//! Mixed precision and memory order, through the C++ shim where tch has no binding: an
//! autocast region with a chosen lower-precision dtype (bfloat16 in the authors' recipe on
//! GPUs; tch alone can only switch autocast on with its default float16) and channels-last
//! (NHWC) tensors for cuDNN's fastest convolutions.

use std::ffi::{c_char, c_int, CStr};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::{Error, Result};

/// The lower precision autocast computes matrix products and convolutions in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LowPrecision {
    /// IEEE half precision.
    F16,
    /// bfloat16 (8-bit exponent: no loss scaling needed).
    Bf16,
}

const ERR_LEN: usize = 512;

fn shim_error(context: &str, buf: &[c_char; ERR_LEN]) -> Error {
    // SAFETY: the shim always NUL-terminates the buffer it writes, and it starts zeroed.
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Error::Torch(tch::TchError::Torch(format!("{context}: {msg}")))
}

fn device_code(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        other => Err(Error::config(
            "device",
            format!("autocast is not supported on {other:?}"),
        )),
    }
}

/// An autocast region on the current thread: while it lives, matrix products and convolutions
/// on `device` run in the chosen lower precision (reductions and losses stay in f32, as in
/// PyTorch's `torch.autocast`). Dropping it restores the previous state. Autocast state is per
/// thread, so the guard is neither `Send` nor `Sync`.
#[derive(Debug)]
pub struct Autocast {
    device: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Autocast {
    /// Enters the region.
    pub fn enter(device: Device, dtype: LowPrecision) -> Result<Self> {
        let code = device_code(device)?;
        let dtype = match dtype {
            LowPrecision::F16 => 0,
            LowPrecision::Bf16 => 1,
        };
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: all pointers are valid for the call; the buffer length is passed.
        let rc = unsafe {
            directclr_sys::directclr_autocast_enter(
                code,
                dtype,
                &mut prev_enabled,
                &mut prev_dtype,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        if rc != 0 {
            return Err(shim_error("cannot enter autocast", &err));
        }
        Ok(Autocast {
            device: code,
            prev_enabled,
            prev_dtype,
            _not_send: std::marker::PhantomData,
        })
    }

    /// Whether autocast is on for `device` on this thread.
    pub fn is_enabled(device: Device) -> bool {
        // SAFETY: a plain query with a valid device code.
        device_code(device)
            .map(|c| unsafe { directclr_sys::directclr_autocast_is_enabled(c) } == 1)
            .unwrap_or(false)
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: valid buffer and codes saved by `enter`.
        let rc = unsafe {
            directclr_sys::directclr_autocast_exit(
                self.device,
                self.prev_enabled,
                self.prev_dtype,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        if rc != 0 {
            // Drop cannot fail; restoring thread-local flags does not fail in practice.
            eprintln!("warning: {}", shim_error("cannot leave autocast", &err));
        }
    }
}

/// The tensor in channels-last (NHWC) memory order; its shape and values are unchanged.
/// # Shapes
/// [N, C, H, W] → [N, C, H, W] (strides of NHWC)
pub fn to_channels_last(t: &Tensor) -> Result<Tensor> {
    if t.dim() != 4 {
        return Err(Error::config(
            "channels_last",
            format!("needs a 4-d tensor, got shape {:?}", t.size()),
        ));
    }
    let mut out: *mut directclr_sys::C_tensor = std::ptr::null_mut();
    let mut err = [0 as c_char; ERR_LEN];
    // SAFETY: `t` is a live tensor; on success the shim hands over a new heap tensor that
    // `Tensor::from_ptr` takes ownership of.
    let rc = unsafe {
        directclr_sys::directclr_to_channels_last(t.as_ptr(), &mut out, err.as_mut_ptr(), ERR_LEN)
    };
    if rc != 0 || out.is_null() {
        return Err(shim_error("cannot convert to channels-last", &err));
    }
    // SAFETY: `out` is a valid, owned at::Tensor* from the shim.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether the tensor is laid out channels-last.
pub fn is_channels_last(t: &Tensor) -> bool {
    // SAFETY: `t` is a live tensor.
    t.dim() == 4 && unsafe { directclr_sys::directclr_is_channels_last(t.as_ptr()) } == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn autocast_on_cpu_runs_matmul_in_bf16_and_restores() {
        let a = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
        assert!(!Autocast::is_enabled(Device::Cpu));
        let exact = a.matmul(&b);
        {
            let _outer = Autocast::enter(Device::Cpu, LowPrecision::Bf16).unwrap();
            assert!(Autocast::is_enabled(Device::Cpu));
            let c = a.matmul(&b);
            assert_eq!(c.kind(), Kind::BFloat16);
            // Close to the f32 product within bf16's precision (8 bits of mantissa).
            let err = (c.to_kind(Kind::Float) - &exact)
                .abs()
                .max()
                .double_value(&[]);
            assert!(
                err < 0.05 * exact.abs().max().double_value(&[]) + 0.05,
                "{err}"
            );
            {
                let _inner = Autocast::enter(Device::Cpu, LowPrecision::Bf16).unwrap();
                assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
            }
            assert!(
                Autocast::is_enabled(Device::Cpu),
                "the inner region restores the outer one"
            );
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    #[test]
    fn channels_last_keeps_values_and_convolutions_keep_the_order() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        assert!(!is_channels_last(&x));
        let y = to_channels_last(&x).unwrap();
        assert!(is_channels_last(&y));
        assert_eq!(y.size(), x.size());
        assert_eq!((&y - &x).abs().max().double_value(&[]), 0.0);
        let w = to_channels_last(&Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu))).unwrap();
        let out = y.conv2d(&w, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert!(is_channels_last(&out));
        assert!(matches!(
            to_channels_last(&Tensor::zeros([3], (Kind::Float, Device::Cpu))),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
