//! GitLab webhook bodies: parsing any bytes gives an event, an ignored kind or an error,
//! never a panic. The body decides the kind; the header only labels bodies without one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbforge::forge::gitlab::payload::parse;

fuzz_target!(|body: &[u8]| {
    for header in [Some("Push Hook"), Some("System Hook"), None] {
        let _ = parse(header, body);
    }
});
