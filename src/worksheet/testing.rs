//! Helpers for the worksheet module's unit tests: the real notebooks of
//! `tests/data/notebooks/` and form submissions.

use super::{Notebook, RenderOptions, render};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/notebooks")
}

/// The notebooks at the top of the corpus folder, sorted.
pub fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    files.sort();
    files
}

pub fn load(name: &str) -> Notebook {
    let bytes = std::fs::read(corpus_dir().join(name)).unwrap();
    Notebook::from_slice(&bytes).unwrap()
}

/// The body of a corpus notebook rendered with the default options.
pub fn render_file(name: &str) -> String {
    render(&load(name), &RenderOptions::default()).body_html
}

pub fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
