use std::fmt;

/// Why bytes could not be decoded. Offsets count bytes from the start of
/// the stream (or of the buffer given to [`decode`](crate::decode)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A message starts with a byte that is not one of the five types. The
    /// stream cannot be resynchronised after it.
    UnknownType { byte: u8, offset: u64 },
    /// The message that started at `start` grew past `max` bytes; `offset`
    /// is its first byte beyond the limit.
    TooLarge { max: usize, start: u64, offset: u64 },
    /// The input ended at `offset`, inside a message (`inside` says where).
    Truncated { offset: u64, inside: String },
    /// A whole message was decoded but bytes follow it, from `offset`.
    TrailingBytes { offset: u64 },
    /// A whole message was decoded, but not of the type the caller asked
    /// for (see [`decode_archive`](crate::decode_archive)).
    UnexpectedType {
        expected: crate::MessageType,
        found: crate::MessageType,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType { byte, offset } => {
                write!(f, "unknown message type 0x{byte:02x} at byte {offset}")
            }
            DecodeError::TooLarge { max, start, offset } => write!(
                f,
                "message starting at byte {start} exceeds the maximum of {max} bytes at byte {offset}"
            ),
            DecodeError::Truncated { offset, inside } => {
                write!(f, "input ends at byte {offset}, inside {inside}")
            }
            DecodeError::TrailingBytes { offset } => {
                write!(f, "unexpected bytes after the message, from byte {offset}")
            }
            DecodeError::UnexpectedType { expected, found } => write!(
                f,
                "holds a {found:?} message (type byte 0x{:02x}), not an {expected:?} (0x{:02x})",
                *found as u8, *expected as u8
            ),
        }
    }
}

impl std::error::Error for DecodeError {}
