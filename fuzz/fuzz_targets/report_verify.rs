//! The offline report verifier (`domain::audit::report::verify_report`), which reads files a
//! regulator was handed: arbitrary bytes must not panic, and an edited copy of a valid report
//! that still verifies must carry the original's manifest and row count (the signature binds
//! them).
#![no_main]

mod fixture;

use domain::audit::verify_report;
use fixture::original;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Any bytes at all.
    Raw(Vec<u8>),
    /// A valid report with bytes replaced, inserted or removed at the given offsets.
    Edit(Vec<(u16, u8, u8)>),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(bytes) => {
            let _ = verify_report(&bytes, None);
        }
        Input::Edit(edits) => {
            let (report, verified) = original();
            let mut bytes = report.clone();
            for (at, kind, byte) in edits.into_iter().take(4) {
                let at = usize::from(at) % (bytes.len() + 1);
                match kind % 3 {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            if let Ok(again) = verify_report(&bytes, None) {
                assert_eq!(
                    again.manifest, verified.manifest,
                    "an edited report verified with another manifest"
                );
                assert_eq!(again.rows, verified.rows);
            }
        }
    }
});
