//! The rules about chat text, imported by everything that shows or accepts
//! it: how any chat is shown on a terminal, and what a chat written here
//! may hold.

use std::fmt;

/// A chat's text as a terminal can show it: chats from other peers may
/// hold any byte (PROTOCOL.md), so every byte outside printable ASCII is
/// escaped (`\n`, `\x07`, ...), and a backslash is doubled so that an
/// escape cannot be forged; quotes and the rest of printable ASCII are
/// shown as typed.
pub fn printable(text: &[u8]) -> String {
    let mut shown = String::with_capacity(text.len());
    for &byte in text {
        match byte {
            b'\\' => shown.push_str("\\\\"),
            b' '..=b'~' => shown.push(char::from(byte)),
            _ => shown.extend(byte.escape_ascii().map(char::from)),
        }
    }
    shown
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
        let what = if text[at] < 0x80 {
            "a control character"
        } else {
            "a non-ASCII byte"
        };
        return Err(Unsendable(format!(
            "chat refused: {what} (0x{:02x}) at byte {at}; only printable ASCII can be sent",
            text[at]
        )));
    }
    Ok(())
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
        assert!(
            check_sendable("café".as_bytes())
                .unwrap_err()
                .0
                .contains("non-ASCII byte (0xc3) at byte 3")
        );
        assert!(
            check_sendable(b"a\x07b")
                .unwrap_err()
                .0
                .contains("control character (0x07) at byte 1")
        );
    }

    #[test]
    fn a_typed_chat_loses_its_surrounding_spaces_and_spaces_alone_are_empty() {
        assert_eq!(chat_text(b"  a  b \t").unwrap(), b"a  b");
        assert!(chat_text(b"   ").unwrap_err().0.contains("empty"));
    }

    #[test]
    fn any_byte_is_shown_escaped() {
        assert_eq!(printable(b"a\nb\xff"), "a\\nb\\xff");
        assert_eq!(printable(br#"it's "quoted" \n"#), r#"it's "quoted" \\n"#);
    }
}
