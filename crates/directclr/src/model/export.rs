//! Writing an encoder back for PyTorch: `torch.save`'s zip format, written by a small writer
//! (the pickle is protocol 2 with only the globals `torch.load(..., weights_only=True)`
//! allows: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the typed storage
//! classes), so that torchvision's `resnetXX()` with `fc = nn.Identity()` loads it with
//! `load_state_dict(strict=True)`. Safetensors is written by [`super::save_safetensors`].

use std::io::Write;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

fn storage_class(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "FloatStorage",
        Kind::Double => "DoubleStorage",
        Kind::Half => "HalfStorage",
        Kind::BFloat16 => "BFloat16Storage",
        Kind::Int64 => "LongStorage",
        Kind::Int => "IntStorage",
        Kind::Uint8 => "ByteStorage",
        Kind::Bool => "BoolStorage",
        _ => return None,
    })
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.op(b"c");
        self.op(module.as_bytes());
        self.op(b"\n");
        self.op(name.as_bytes());
        self.op(b"\n");
    }
    fn str(&mut self, s: &str) {
        self.op(b"X");
        self.op(&(s.len() as u32).to_le_bytes());
        self.op(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.op(&[b'K', v as u8]);
        } else if let Ok(v) = i32::try_from(v) {
            self.op(b"J");
            self.op(&v.to_le_bytes());
        } else {
            self.op(&[0x8a, 8]);
            self.op(&v.to_le_bytes());
        }
    }
    fn ints(&mut self, v: &[i64]) {
        self.op(b"(");
        for &x in v {
            self.int(x);
        }
        self.op(b"t");
    }
}

/// The bytes of a `torch.save` file holding `tensors` as a state dict (an `OrderedDict` of
/// contiguous CPU tensors, one storage each) in an archive named `archive`.
pub fn serialize_torch(tensors: &[(String, Tensor)], archive: &str) -> Result<Vec<u8>> {
    let mut p = Pickle(Vec::new());
    p.op(&[0x80, 2]);
    p.global("collections", "OrderedDict");
    p.op(b")R(");
    let mut storages = Vec::with_capacity(tensors.len());
    for (i, (name, t)) in tensors.iter().enumerate() {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let class = storage_class(t.kind()).ok_or_else(|| Error::StateMismatch {
            what: format!("tensor `{name}`"),
            reason: format!("{:?} cannot be written for torch.save", t.kind()),
        })?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let size = t.size();
        let mut stride = vec![1i64; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * size[d + 1].max(1);
        }
        p.str(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b"((");
        p.str("storage");
        p.global("torch", class);
        p.str(&i.to_string());
        p.str("cpu");
        p.int(numel as i64);
        p.op(b"tQ");
        p.int(0);
        p.ints(&size);
        p.ints(&stride);
        p.op(&[0x89]);
        p.global("collections", "OrderedDict");
        p.op(b")R");
        p.op(b"tR");
        storages.push(bytes);
    }
    p.op(b"u.");
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        let mut put = |name: String, bytes: &[u8]| -> Result<()> {
            z.start_file(name.as_str(), opts)
                .and_then(|_| z.write_all(bytes).map_err(Into::into))
                .map_err(|e| Error::StateMismatch {
                    what: format!("torch.save archive entry `{name}`"),
                    reason: e.to_string(),
                })
        };
        put(format!("{archive}/data.pkl"), &p.0)?;
        put(format!("{archive}/byteorder"), b"little")?;
        for (i, bytes) in storages.iter().enumerate() {
            put(format!("{archive}/data/{i}"), bytes)?;
        }
        put(format!("{archive}/version"), b"3\n")?;
        z.finish().map_err(|e| Error::StateMismatch {
            what: "torch.save archive".into(),
            reason: e.to_string(),
        })?;
    }
    Ok(out.into_inner())
}

/// Writes `tensors` as a `torch.save` state dict to `file` (see [`serialize_torch`]).
pub fn save_torch(file: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let file = file.as_ref();
    let archive = file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or("archive");
    let bytes = serialize_torch(tensors, archive)?;
    std::fs::write(file, bytes).map_err(|e| Error::io("cannot write", file, e))
}
