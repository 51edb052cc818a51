//! GitHub webhook bodies under every event header nbforge reads (and one it ignores):
//! an event, an ignored kind or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbforge::forge::github::payload::parse;

const HEADERS: [&str; 8] = [
    "push",
    "create",
    "delete",
    "pull_request",
    "member",
    "membership",
    "fork",
    "ping",
];

fuzz_target!(|body: &[u8]| {
    for header in HEADERS {
        let _ = parse(Some(header), body);
    }
});
