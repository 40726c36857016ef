//! The rules about chat text, imported by everything that shows or accepts
//! it: how any chat is shown on a terminal, and what a chat written here
//! may hold.

use std::fmt;

/// A chat's text as a terminal can show it: chats from other peers may
/// hold any byte (PROTOCOL.md). Text that is valid UTF-8 is shown as such
/// (`café ☕`); every byte of a control or invisible character (a tab, an
/// escape, a zero-width space, a direction override), and every byte that
/// is not part of valid UTF-8, is escaped (`\n`, `\x07`, `\xe2\x80\x8b`,
/// `\xff`); a backslash is doubled so that an escape cannot be forged.
pub fn printable(text: &[u8]) -> String {
    let mut shown = String::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => shown.push_str("\\\\"),
                c if is_invisible(c) => {
                    let mut bytes = [0; 4];
                    for &byte in c.encode_utf8(&mut bytes).as_bytes() {
                        shown.extend(byte.escape_ascii().map(char::from));
                    }
                }
                c => shown.push(c),
            }
        }
        for &byte in chunk.invalid() {
            shown.extend(byte.escape_ascii().map(char::from));
        }
    }
    shown
}

/// A character a terminal would not show as itself: a control character,
/// or one of Unicode's invisible format characters (zero-width spaces and
/// joiners, direction marks and overrides, the byte order mark, the soft
/// hyphen, line and paragraph separators).
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{34f}'
                | '\u{61c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

/// `1 chat`, `2 chats`: a count of `what` in words.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The text of a chat as typed (at the prompt, by `node chat`, in a
/// control request): surrounding spaces dropped, then [`check_sendable`].
/// One rule everywhere, so that the same words make the same chat.
///
/// # Errors
/// [`Unsendable`], when what is left cannot be sent (empty included).
pub fn chat_text(typed: &[u8]) -> Result<&[u8], Unsendable> {
    let text = typed.trim_ascii();
    check_sendable(text).map(|()| text)
}

/// Why a text cannot be sent as a chat, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(String);

impl fmt::Display for Unsendable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsendable {}

/// A chat written here is 1 to 255 bytes of printable ASCII (0x20..=0x7E;
/// PROTOCOL.md: "Chats written by this project use printable ASCII only").
///
/// # Errors
/// [`Unsendable`], naming the first offending byte and its offset.
pub fn check_sendable(text: &[u8]) -> Result<(), Unsendable> {
    if text.is_empty() {
        return Err(Unsendable(
            "chat refused: the text is empty (usage: chat TEXT)".into(),
        ));
    }
    if text.len() > wire::MAX_TEXT {
        return Err(Unsendable(format!(
            "chat refused: the text is {} bytes, the most is {}",
            text.len(),
            wire::MAX_TEXT
        )));
    }
    if let Some(at) = text.iter().position(|b| !(0x20..=0x7e).contains(b)) {
        return Err(Unsendable(format!(
            "chat refused: {}; the network's chats are printable ASCII only",
            offending(text, at)
        )));
    }
    Ok(())
}

/// The character at byte `at` of `text` (not printable ASCII), named as
/// typed: `'é' (U+00E9), character 4`; a control character or a byte that
/// is not UTF-8 by its value.
fn offending(text: &[u8], at: usize) -> String {
    let before = String::from_utf8_lossy(&text[..at]).chars().count() + 1;
    let rest = &text[at..];
    let len = rest.len().min(4);
    let c = (1..=len).find_map(|n| std::str::from_utf8(&rest[..n]).ok());
    match c.and_then(|s| s.chars().next()) {
        Some(c) if c.is_control() => format!(
            "character {before} is a control character (0x{:02x})",
            u32::from(c)
        ),
        Some(c) if is_invisible(c) => format!(
            "character {before} is an invisible character (U+{:04X})",
            u32::from(c)
        ),
        Some(c) => format!(
            "character {before}, '{c}' (U+{:04X}), is not ASCII",
            u32::from(c)
        ),
        None => format!(
            "byte {} (0x{:02x}) is not text (not UTF-8)",
            at + 1,
            text[at]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_text_is_printable_ascii_of_1_to_255_bytes() {
        assert!(check_sendable(b"hello  world").is_ok());
        assert!(check_sendable(&[b'a'; 255]).is_ok());
        assert!(check_sendable(b"").unwrap_err().0.contains("empty"));
        assert!(
            check_sendable(&[b'a'; 256])
                .unwrap_err()
                .0
                .contains("256 bytes")
        );
        assert_eq!(
            check_sendable("café ☕".as_bytes()).unwrap_err().0,
            "chat refused: character 4, 'é' (U+00E9), is not ASCII; the network's chats \
             are printable ASCII only"
        );
        assert!(
            check_sendable(b"a\x07b")
                .unwrap_err()
                .0
                .contains("character 2 is a control character (0x07)")
        );
        assert!(
            check_sendable("a\u{200b}".as_bytes())
                .unwrap_err()
                .0
                .contains("character 2 is an invisible character (U+200B)")
        );
        assert!(
            check_sendable(b"ab\xff")
                .unwrap_err()
                .0
                .contains("byte 3 (0xff) is not text")
        );
    }

    #[test]
    fn a_typed_chat_loses_its_surrounding_spaces_and_spaces_alone_are_empty() {
        assert_eq!(chat_text(b"  a  b \t").unwrap(), b"a  b");
        assert!(chat_text(b"   ").unwrap_err().0.contains("empty"));
    }

    #[test]
    fn utf8_is_shown_and_the_rest_escaped() {
        assert_eq!(printable(b"a\nb\xff"), "a\\nb\\xff");
        assert_eq!(printable("café ☕".as_bytes()), "café ☕");
        assert_eq!(
            printable("a\u{200b}\u{202e}b".as_bytes()),
            r"a\xe2\x80\x8b\xe2\x80\xaeb"
        );
        assert_eq!(printable(b"caf\xc3"), r"caf\xc3");
        assert_eq!(printable("\u{85}".as_bytes()), r"\xc2\x85");
        assert_eq!(printable(br#"it's "quoted" \n"#), r#"it's "quoted" \\n"#);
    }
}
