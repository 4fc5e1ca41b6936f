//! Text people type for others to read: key labels and names, token names, notes, reasons.

/// Whether `c` has no place in text shown to others: a control character, or one that changes
/// how the text around it reads without showing itself (a bidirectional override, isolate or
/// mark, a line or paragraph separator, a zero-width space, joiner-less invisible operators, a
/// soft hyphen, a byte-order mark, Hangul fillers, tag characters that can carry hidden text).
/// The zero-width joiner stays: emoji sequences need it. Each could make
/// a label, a note or an audit row read as something it is not.
pub fn hides_or_moves_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{180e}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// Whether every character of `text` may be shown to others (see [`hides_or_moves_text`]).
pub fn is_plain(text: &str) -> bool {
    !text.chars().any(hides_or_moves_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_tricks_and_controls_are_not_plain_text() {
        for tricky in [
            "invoice\u{202e}fdp.exe",
            "a\u{2066}b",
            "line\u{2028}break",
            "zero\u{200b}width",
            "\u{feff}bom",
            "soft\u{ad}hyphen",
            "tag\u{e0041}",
            "filler\u{3164}",
            "tab\there",
            "nul\0",
        ] {
            assert!(!is_plain(tricky), "{tricky:?}");
        }
        for fine in [
            "Trading bot #2",
            "Clé Binance",
            "币安 key",
            "emoji 🔑",
            "a-b_c.d",
        ] {
            assert!(is_plain(fine), "{fine:?}");
        }
    }
}
