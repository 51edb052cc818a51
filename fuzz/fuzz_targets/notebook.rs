//! The notebook model: whatever reads as a notebook writes JSON that reads back, and writing
//! is a fixed point from then on (the first write may change only the form of multiline
//! strings in MIME bundles, which nbformat splits into lines); reading its parameters and
//! rendering it never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbforge::worksheet::{self, Notebook, RenderOptions};

fuzz_target!(|bytes: &[u8]| {
    let Ok(nb) = Notebook::from_slice(bytes) else {
        return;
    };
    let written = nb.to_json_pretty();
    let again = Notebook::from_json(&written).expect("a written notebook reads back");
    assert_eq!(again.cells.len(), nb.cells.len());
    assert_eq!(again.to_json_pretty(), written, "writing is not stable");
    let _ = worksheet::parameters(&nb);
    let _ = worksheet::render(&nb, &RenderOptions::default());
});
