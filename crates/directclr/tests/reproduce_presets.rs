//! Every shipped reproduction config parses, validates and builds valid pretraining configs.

use std::path::Path;

use directclr::reproduce::ReproduceConfig;

#[test]
fn shipped_reproduction_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("reproduce-") && name.ends_with(".toml")) {
            continue;
        }
        let config = ReproduceConfig::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let preset = config.preset().unwrap_or_else(|e| panic!("{name}: {e}"));
        for job in config.jobs() {
            config
                .train_config(&preset, &job)
                .check()
                .unwrap_or_else(|e| panic!("{name}, run {}: {e}", job.folder));
        }
        seen += 1;
    }
    assert!(seen >= 3, "{seen} reproduction configs");
}
