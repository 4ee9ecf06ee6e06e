//! `cargo xtask trace stats`: the statistics of a capacity trace — a
//! mahimahi file or a model of a scenario's — as the lab's links see them
//! (`strata_lab::emulator::trace_stats`). How the `cellular` model's
//! defaults were fitted to a real trace (docs/BENCHMARKS.md).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use strata_lab::{
    emulator::{trace::Trace, trace_stats::TraceStats},
    scenario::spec::TraceModel,
};

/// What to describe: a file, or a model (`model = "cellular", mean_mbit_s = 5`).
pub(crate) struct StatsArgs<'a> {
    pub file: Option<&'a Path>,
    pub model: Option<&'a str>,
    pub duration_s: f64,
    pub seeds: u64,
    pub json: bool,
    pub write: Option<&'a Path>,
}

pub(crate) fn stats(args: &StatsArgs<'_>) -> anyhow::Result<()> {
    let models: Vec<(String, TraceModel)> = match (args.file, args.model) {
        (Some(file), None) => vec![(
            file.display().to_string(),
            TraceModel::File { path: PathBuf::from(file), offset_s: 0.0, scale: 1.0, fallback: None },
        )],
        (None, Some(text)) => {
            let model = TraceModel::parse_inline(text)?;
            (1..=args.seeds.max(1)).map(|seed| (format!("{text} (seed {seed})"), model.clone())).collect()
        }
        _ => anyhow::bail!("give a trace FILE or --model '<model = \"cellular\", mean_mbit_s = 5, …>'"),
    };
    let mut all = Vec::new();
    for (seed, (label, model)) in (1u64..).zip(&models) {
        let (trace, source) = model.generate_with_source(args.duration_s, seed)?;
        if let Some(path) = args.write {
            let out = if models.len() > 1 {
                path.with_extension(format!("seed{seed}"))
            } else {
                path.to_path_buf()
            };
            std::fs::write(&out, trace_text(&trace)).with_context(|| format!("writing {}", out.display()))?;
        }
        let s = TraceStats::of(&trace);
        if args.json {
            all.push(serde_json::json!({ "trace": label, "source": source, "stats": s }));
        } else {
            println!("{label}\n  {}\n{s}\n", source.description);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// Mahimahi text whose last line closes the trace's period (a silent tail
/// gets one opportunity there).
fn trace_text(trace: &Trace) -> String {
    let mut text = trace.to_mahimahi();
    if trace.opportunities_ms().last() != Some(&trace.period_ms()) {
        text.push_str(&format!("{}\n", trace.period_ms()));
    }
    text
}
