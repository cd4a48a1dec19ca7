//! `directclr export`: a run's encoder (or any encoder file `--encoder` reads) written for
//! PyTorch under torchvision's names, as safetensors or `torch.save`.

use anyhow::Context;
use directclr::model::{save_safetensors, save_torch};

use super::eval_input::load_model;
use crate::cli::{ExportArgs, ExportFormat};

/// Runs `export`.
pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let format = a.format.unwrap_or(
        if a.out.extension().and_then(|e| e.to_str()) == Some("safetensors") {
            ExportFormat::Safetensors
        } else {
            ExportFormat::Pt
        },
    );
    if a.model.run.is_none() && a.model.arch.dataset.is_none() {
        // An encoder file alone needs no dataset to be exported.
        let mut m = a.model.clone();
        m.arch.dataset = Some("image_folder".into());
        return export(
            &load_model(&m, Some(std::path::Path::new(".")))?,
            format,
            &a,
        );
    }
    export(&load_model(&a.model, None)?, format, &a)
}

fn export(
    model: &directclr::eval::TrainedModel,
    format: ExportFormat,
    a: &ExportArgs,
) -> anyhow::Result<()> {
    let tensors = model.encoder().named_tensors();
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating `{}`", parent.display()))?;
    }
    match format {
        ExportFormat::Safetensors => save_safetensors(&a.out, tensors),
        ExportFormat::Pt => save_torch(&a.out, tensors),
    }
    .with_context(|| format!("writing `{}`", a.out.display()))?;
    println!(
        "encoder ({} tensors, {} names, r {}-d) -> {} ({})",
        tensors.len(),
        if model.encoder().resnet().is_some() {
            "torchvision"
        } else {
            "state_dict"
        },
        model.encoder().feat_dim(),
        a.out.display(),
        match format {
            ExportFormat::Safetensors => "safetensors",
            ExportFormat::Pt => "torch.save",
        }
    );
    Ok(())
}
