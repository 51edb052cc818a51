//! Worksheet rendering benchmark against `jupyter nbconvert --to html --no-input`.
//!
//! `cargo run --release --example worksheet_bench -- [CORPUS_DIR] [ITERATIONS] [--no-nbconvert]`

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let compare = !args.iter().any(|a| a == "--no-nbconvert");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let dir = positional
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/data/notebooks"));
    let iterations = match positional.next() {
        Some(n) => n.parse()?,
        None => 50,
    };
    let report = nbforge::worksheet::bench::bench(&dir, iterations, compare)?;
    println!("{report}");
    Ok(())
}
