pub fn run(_a: crate::cli::ReproduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("reproduce: in progress")
}
