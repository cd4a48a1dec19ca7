//! `directclr probe`: the linear probe of a pretrained encoder (or the evaluation of a saved
//! classifier, or of the run's online probe).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use directclr::eval::{accuracies, extract, linear_probe, Classifier, ProbeConfig, ProbeMode};

use super::eval_input::{extract_options, load_model, model_folder, model_name, read_splits};
use crate::cli_eval::ProbeArgs;

/// Runs `probe`.
pub fn run(a: ProbeArgs) -> anyhow::Result<()> {
    let model = load_model(&a.model, a.data.data.as_deref())?;
    let (train, test) = read_splits(&model, &a.data)?;
    let what_test = format!("test split of `{}`", test.origin().display());
    if a.online || a.classifier.is_some() {
        let classifier = match &a.classifier {
            Some(file) => Classifier::load(file, model.device())?,
            None => {
                let p = model.online_probe().ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} trained no online probe (probe = false in its config, or an encoder file)",
                        model_name(&a.model)
                    )
                })?;
                Classifier::from_online_probe(
                    p,
                    test.class_names(),
                    &format!("the online probe of {}", model_name(&a.model)),
                )?
            }
        };
        classifier.check_classes(test.class_names(), &what_test)?;
        let f = extract(
            &model,
            test.clone(),
            directclr::eval::eval_transform(model.config().config().data.image_size),
            classifier.meta.space,
            &extract_options(&a.data),
        )?;
        let x = classifier
            .meta
            .slice
            .apply(&f.x, "slice")?
            .f_to_device(model.device())?;
        let (top1, top5) = tch::no_grad(|| {
            accuracies(
                &classifier.logits(&x)?,
                &f.labels.f_to_device(model.device())?,
                5,
            )
        })?;
        println!(
            "probe ({}): top-1 {top1:.2} %, top-5 {top5:.2} % on {} test images",
            if a.online {
                "online probe of the run"
            } else {
                "saved classifier"
            },
            test.len()
        );
        return Ok(());
    }

    // Space and slice are checked before any work.
    a.slice.resolve(model.dim(a.space)?, "slice")?;
    let config = ProbeConfig {
        mode: a.mode,
        space: a.space,
        slice: a.slice,
        epochs: a.epochs,
        batch_size: a.data.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        workers: a.data.workers,
        ..ProbeConfig::default()
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let mode = match a.mode {
            ProbeMode::Augmented => "augmented",
            ProbeMode::Features => "features",
        };
        model_folder(&a.model).join("probe").join(format!(
            "{}{}-{mode}",
            a.space.symbol(),
            a.slice.file_tag()
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating `{}`", out.display()))?;
    println!(
        "probe: {:?} mode on {}{} of {} ({} train / {} test images, {} epochs)",
        a.mode,
        a.space.symbol(),
        a.slice,
        model_name(&a.model),
        train.len(),
        test.len(),
        a.epochs
    );
    let quiet = a.quiet;
    let (report, classifier) = linear_probe(&model, train, test, &config, &mut |e| {
        if !quiet {
            println!(
                "  epoch {:>3}  lr {:.4}  loss {:.4}  top-1 {:6.2} %  top-5 {:6.2} %",
                e.epoch + 1,
                e.lr,
                e.loss,
                e.top1,
                e.top5
            );
        }
    })?;
    write_outputs(&out, &report, &classifier)?;
    println!(
        "probe {}{}: best top-1 {:.2} % (top-5 {:.2} %), last top-1 {:.2} % (top-5 {:.2} %) -> {}",
        a.space.symbol(),
        a.slice,
        report.best_top1,
        report.best_top5,
        report.last_top1,
        report.last_top5,
        out.display()
    );
    Ok(())
}

/// probe.json, probe.csv and classifier.safetensors in `out`.
fn write_outputs(
    out: &std::path::Path,
    report: &directclr::eval::ProbeReport,
    classifier: &Classifier,
) -> anyhow::Result<()> {
    let json: PathBuf = out.join("probe.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing `{}`", json.display()))?;
    let mut csv = String::from("epoch,lr,loss,top1,top5\n");
    for e in &report.epochs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            e.epoch + 1,
            e.lr,
            e.loss,
            e.top1,
            e.top5
        );
    }
    let csv_file = out.join("probe.csv");
    std::fs::write(&csv_file, csv).with_context(|| format!("writing `{}`", csv_file.display()))?;
    classifier.save(&out.join("classifier.safetensors"))?;
    Ok(())
}
