//! `directclr knn`: weighted k-nearest-neighbour accuracy of a pretrained encoder.

use anyhow::Context;
use directclr::eval::{eval_transform, extract, knn, Features, KnnConfig};

use super::eval_input::{extract_options, load_model, read_splits};
use crate::cli_eval::KnnArgs;

/// Runs `knn`.
pub fn run(a: KnnArgs) -> anyhow::Result<()> {
    let model = load_model(&a.model, a.data.data.as_deref())?;
    let (train, test) = read_splits(&model, &a.data)?;
    let eval = eval_transform(model.config().config().data.image_size);
    let opts = extract_options(&a.data);
    let sliced = |f: Features| -> anyhow::Result<Features> {
        Ok(Features {
            x: a.slice.apply(&f.x, "slice")?,
            labels: f.labels,
        })
    };
    let bank = sliced(extract(&model, train.clone(), eval, a.space, &opts)?)?;
    let queries = sliced(extract(&model, test.clone(), eval, a.space, &opts)?)?;
    let classes = train.class_names().len() as i64;
    let mut results = Vec::new();
    for &k in &a.k {
        let r = knn(
            &bank,
            &queries,
            classes,
            &KnnConfig {
                k,
                temperature: a.temperature,
                ..KnnConfig::default()
            },
        )?;
        println!(
            "knn {}{} k={} T={}: top-1 {:.2} %, top-5 {:.2} % ({} train / {} test images)",
            a.space.symbol(),
            a.slice,
            r.config.k,
            a.temperature,
            r.top1,
            r.top5,
            bank.len(),
            queries.len()
        );
        results.push(r);
    }
    if let Some(file) = &a.json {
        std::fs::write(file, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing `{}`", file.display()))?;
    }
    Ok(())
}
