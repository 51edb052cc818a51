//! `launch.toml`: any text gives a configuration or located diagnostics, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbforge::spec::launch::parse;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Err(diagnostics) = parse(text) {
        assert!(!diagnostics.is_empty());
        for d in diagnostics {
            if let Some(line) = d.line {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{d}");
            }
        }
    }
});
