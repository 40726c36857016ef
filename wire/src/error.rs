use std::fmt;

/// Why bytes could not be decoded. Offsets count bytes from the start of
/// the stream (or of the buffer given to [`decode`](crate::decode)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A message starts with a byte that is not one of the five types. The
    /// stream cannot be resynchronised after it.
    UnknownType {
        /// The byte found.
        byte: u8,
        /// Its offset.
        offset: u64,
    },
    /// The message that started at `start` grew past `max` bytes; `offset`
    /// is its first byte beyond the limit.
    TooLarge {
        /// The limit, in bytes.
        max: usize,
        /// Offset of the message's first byte.
        start: u64,
        /// Offset of its first byte beyond the limit (`start + max`).
        offset: u64,
    },
    /// The input ended at `offset`, inside a message (`inside` says where).
    Truncated {
        /// Where the input ended (its length).
        offset: u64,
        /// What was being read, in words ("chat 2 of 3 ... of the
        /// ArchiveResponse starting at byte 0").
        inside: String,
    },
    /// An extension Hello without the extension's magic at `offset`: the
    /// other end is not the compact relay extension.
    NotRelay {
        /// Offset of the Hello's type byte.
        offset: u64,
    },
    /// A whole message was decoded but bytes follow it, from `offset`.
    TrailingBytes {
        /// Offset of the first byte after the message.
        offset: u64,
    },
    /// A whole message was decoded, but not of the type the caller asked
    /// for (see [`decode_archive`](crate::decode_archive)).
    UnexpectedType {
        /// The type asked for.
        expected: crate::MessageType,
        /// The type of the message the bytes hold.
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
            DecodeError::NotRelay { offset } => {
                write!(
                    f,
                    "a Hello without the relay extension's magic at byte {offset}"
                )
            }
            DecodeError::TrailingBytes { offset } => {
                write!(f, "unexpected bytes after the message, from byte {offset}")
            }
            DecodeError::UnexpectedType { expected, found } => {
                let article = |kind: &crate::MessageType| match kind {
                    crate::MessageType::ArchiveRequest | crate::MessageType::ArchiveResponse => {
                        "an"
                    }
                    _ => "a",
                };
                write!(
                    f,
                    "holds {} {found:?} message, not {} {expected:?} (type byte 0x{:02x}, not 0x{:02x})",
                    article(found),
                    article(expected),
                    *found as u8,
                    *expected as u8
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}
