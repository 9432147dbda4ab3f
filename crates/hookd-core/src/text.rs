//! Bounds on text that users control and that hookd sends back or records: error messages
//! quote the values that were wrong (a URL, a JSON key, a schema's 55 KB `pattern`), so each
//! quoted value is cut short, and so is the whole message. gRPC carries a message in a header,
//! and clients refuse headers over a limit (16 KiB for Python's grpcio): an unbounded message
//! would replace the error it explains with "metadata size exceeds hard limit".

use std::borrow::Cow;

/// A double-quoted value inside a message keeps at most this many bytes.
pub const MAX_VALUE_BYTES: usize = 96;
/// The longest message, in bytes, ellipsis included.
pub const MAX_MESSAGE_BYTES: usize = 480;
/// What replaces the part of a text that was cut.
pub const ELLIPSIS: &str = "…";

/// `text` cut to at most `max` bytes (ellipsis included) on a character boundary, with an
/// ellipsis where it was cut; unchanged when it fits.
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let keep = floor_char_boundary(text, max.saturating_sub(ELLIPSIS.len()));
    Cow::Owned(format!("{}{ELLIPSIS}", &text[..keep]))
}

/// `message` with every double-quoted value longer than [`MAX_VALUE_BYTES`] cut (its quotes
/// kept, so the message still reads as "field: value … what is allowed"), and the whole cut
/// at [`MAX_MESSAGE_BYTES`]. Quotes escaped with a backslash inside a value (Rust's `{:?}`,
/// JSON) do not end it.
pub fn bound_message(message: &str) -> Cow<'_, str> {
    if message.len() <= MAX_VALUE_BYTES {
        return Cow::Borrowed(message);
    }
    let bytes = message.as_bytes();
    let mut out = String::new();
    let mut copied = 0; // `message[..copied]` is accounted for in `out`
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(bytes.len());
        if end - start > MAX_VALUE_BYTES {
            let mut keep = floor_char_boundary(message, start + MAX_VALUE_BYTES);
            // Never leave half an escape (`\` without what it escapes) before the ellipsis.
            let backslashes = bytes[start..keep].iter().rev().take_while(|b| **b == b'\\').count();
            keep -= backslashes % 2;
            out.push_str(&message[copied..keep]);
            out.push_str(ELLIPSIS);
            copied = end;
        }
        i = end + 1;
    }
    if copied == 0 {
        return shorten(message, MAX_MESSAGE_BYTES);
    }
    out.push_str(&message[copied..]);
    Cow::Owned(shorten(&out, MAX_MESSAGE_BYTES).into_owned())
}

/// The largest index `<= at` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_left_alone() {
        assert_eq!(shorten("abc", 3), "abc");
        assert!(matches!(bound_message("invalid url: \"x\""), Cow::Borrowed(_)));
    }

    #[test]
    fn shortening_cuts_on_a_character_boundary() {
        let cut = shorten("ééééé", 8); // 10 bytes; 5 kept + the 3-byte ellipsis
        assert_eq!(cut, "éé…");
        assert!(cut.len() <= 8);
    }

    #[test]
    fn long_quoted_values_are_cut_and_the_rest_kept() {
        let pattern = format!("^({})$", "a|".repeat(27_000));
        let message = format!(
            "invalid event.data: data does not match the schema of the event type at /name: \
             \"bob\" does not match {pattern:?}; fix the data"
        );
        let bounded = bound_message(&message).into_owned();
        assert!(bounded.len() <= MAX_MESSAGE_BYTES, "{} bytes", bounded.len());
        assert!(bounded.starts_with("invalid event.data: "), "{bounded}");
        assert!(bounded.contains("\"bob\" does not match \"^(a|a|"), "{bounded}");
        assert!(bounded.contains("…\"; fix the data"), "{bounded}");
    }

    #[test]
    fn escaped_quotes_stay_inside_their_value() {
        let value = format!("{:?}", format!("x\"{}", "y".repeat(200)));
        let bounded = bound_message(&format!("invalid name: {value} is too long")).into_owned();
        assert!(bounded.ends_with("…\" is too long"), "{bounded}");
    }

    #[test]
    fn a_cut_never_splits_an_escape() {
        let value = format!("\"{}{}\"", "a".repeat(MAX_VALUE_BYTES - 1), "\\\\".repeat(50));
        let bounded = bound_message(&format!("invalid id: {value}")).into_owned();
        let inner = bounded.trim_start_matches("invalid id: \"").trim_end_matches("…\"");
        let trailing = inner.bytes().rev().take_while(|b| *b == b'\\').count();
        assert_eq!(trailing % 2, 0, "{bounded}");
    }

    #[test]
    fn unquoted_text_is_cut_as_a_whole() {
        let bounded = bound_message(&"x".repeat(100_000)).into_owned();
        assert_eq!(bounded.len(), MAX_MESSAGE_BYTES);
        assert!(bounded.ends_with(ELLIPSIS));
    }

    #[test]
    fn an_unclosed_quote_runs_to_the_end() {
        let bounded = bound_message(&format!("invalid url: \"{}", "u".repeat(5000))).into_owned();
        assert!(bounded.len() < 2 * MAX_VALUE_BYTES, "{bounded}");
        assert!(bounded.ends_with(ELLIPSIS));
    }
}
