//! The PDF report reader (`server/src/reports/pdf.rs`, compiled from the server's own source):
//! `cryptopulse report verify` takes a PDF a regulator was handed and pulls out the embedded
//! CSV report. Arbitrary bytes must not panic, and an edited copy of a valid PDF whose
//! attachment still verifies carries the original manifest.
#![no_main]

mod fixture;
#[path = "../../server/src/reports/pdf.rs"]
#[allow(dead_code)]
mod pdf;

use std::sync::OnceLock;

use domain::audit::verify_report;
use fixture::original;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Any bytes at all.
    Raw(Vec<u8>),
    /// The valid PDF with bytes replaced, inserted or removed at the given offsets.
    Edit(Vec<(u32, u8, u8)>),
}

/// The PDF the server builds from the fixture report.
fn valid_pdf() -> &'static Vec<u8> {
    static PDF: OnceLock<Vec<u8>> = OnceLock::new();
    PDF.get_or_init(|| {
        let (report, verified) = original();
        let pdf =
            pdf::build_pdf(report, &verified.manifest, |_| {}).expect("the fixture PDF builds");
        assert_eq!(&pdf::embedded_report(&pdf).expect("attachment"), report);
        pdf
    })
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(bytes) => {
            if let Ok(csv) = pdf::embedded_report(&bytes) {
                let _ = verify_report(&csv, None);
            }
        }
        Input::Edit(edits) => {
            let mut bytes = valid_pdf().clone();
            for (at, kind, byte) in edits.into_iter().take(4) {
                let at = usize::try_from(at).unwrap_or(0) % (bytes.len() + 1);
                match kind % 3 {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            if let Ok(csv) = pdf::embedded_report(&bytes)
                && let Ok(again) = verify_report(&csv, None)
            {
                let (_, verified) = original();
                assert_eq!(again.manifest, verified.manifest);
                assert_eq!(again.rows, verified.rows);
            }
        }
    }
});
