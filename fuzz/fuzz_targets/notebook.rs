//! The notebook model: whatever reads as a notebook writes back to JSON that reads as the
//! same notebook, and writing is stable; reading its parameters and rendering it never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbforge::worksheet::{self, Notebook, RenderOptions};

fuzz_target!(|bytes: &[u8]| {
    let Ok(nb) = Notebook::from_slice(bytes) else {
        return;
    };
    let written = nb.to_json_pretty();
    let again = Notebook::from_json(&written).expect("a written notebook reads back");
    assert_eq!(again, nb, "round trip changed the notebook");
    assert_eq!(again.to_json_pretty(), written, "writing is not stable");
    let _ = worksheet::parameters(&nb);
    let _ = worksheet::render(&nb, &RenderOptions::default());
});
