//! The compact relay extension's messages (`docs/EXTENSION.md` in the
//! repository): spoken only on a connection of its own, between nodes that
//! both offer it, beside the five standard messages.
//!
//! A new chat then costs its own size instead of the whole history: peers
//! tell each other their tip (length and last digest), and send the chats
//! past an index together with the digest of the chat before them, so that
//! the receiver checks that the prefix they extend is the one it holds.
//!
//! | type | name           | after the type byte                                  |
//! |------|----------------|------------------------------------------------------|
//! | 0x10 | Hello          | 4 bytes `CCRX`, u8 version (1)                       |
//! | 0x11 | Tip            | u32 length, 16-byte digest of the last chat          |
//! | 0x12 | ChatsRequest   | u32 from, 16-byte digest of chat `from - 1`          |
//! | 0x13 | Chats          | u32 from, 16-byte digest of chat `from - 1`, u32 C, C chats |
//! | 0x14 | NoCommonPrefix | u32 from, 16-byte digest, as in the ChatsRequest     |
//!
//! Integers are big-endian; the digest "of chat −1" (`from` = 0) is 16
//! zero bytes. Chats are laid out as in an ArchiveResponse. A Chats message
//! streams chat by chat through the [`FrameDecoder`](crate::FrameDecoder)
//! ([`Frame::ChatsStart`](crate::Frame::ChatsStart)); the others are
//! [`RelayMessage`]s.

use crate::DIGEST_LEN;

/// The four bytes every Hello carries after its type byte.
pub const RELAY_MAGIC: [u8; 4] = *b"CCRX";
/// The extension's version, carried by Hello.
pub const RELAY_VERSION: u8 = 1;
/// Bytes of a Chats message before its chats: type, from, digest, count.
pub const CHATS_HEADER_LEN: usize = 1 + 4 + DIGEST_LEN + 4;

/// The type byte of an extension message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RelayType {
    /// 0x10: `CCRX`, u8 version.
    Hello = 0x10,
    /// 0x11: u32 length, digest.
    Tip = 0x11,
    /// 0x12: u32 from, digest of chat `from - 1`.
    ChatsRequest = 0x12,
    /// 0x13: u32 from, digest of chat `from - 1`, u32 count, chats.
    Chats = 0x13,
    /// 0x14: u32 from, digest, echoing a ChatsRequest.
    NoCommonPrefix = 0x14,
}

impl RelayType {
    /// The type a byte names; `None` for any byte but 0x10..=0x14.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x10 => RelayType::Hello,
            0x11 => RelayType::Tip,
            0x12 => RelayType::ChatsRequest,
            0x13 => RelayType::Chats,
            0x14 => RelayType::NoCommonPrefix,
            _ => return None,
        })
    }

    /// Bytes after the type byte: the whole of every message but Chats,
    /// whose chats follow.
    pub(crate) fn fixed_len(self) -> usize {
        match self {
            RelayType::Hello => RELAY_MAGIC.len() + 1,
            RelayType::Tip | RelayType::ChatsRequest | RelayType::NoCommonPrefix => 4 + DIGEST_LEN,
            RelayType::Chats => CHATS_HEADER_LEN - 1,
        }
    }
}

/// An extension message other than Chats (which is streamed; see
/// [`chats_header`] to send one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMessage {
    /// The first message each side sends: it speaks the extension, in this
    /// version.
    Hello {
        /// [`RELAY_VERSION`] for this layout.
        version: u8,
    },
    /// The sender's history is `len` chats long and ends with `digest`
    /// (zeros when empty).
    Tip {
        /// Chats.
        len: u32,
        /// The last chat's digest.
        digest: [u8; DIGEST_LEN],
    },
    /// Asks for the chats from index `from` on, provided the receiver's
    /// chat `from - 1` has digest `prev`.
    ChatsRequest {
        /// The first chat wanted.
        from: u32,
        /// The digest of the chat before it (zeros when `from` is 0).
        prev: [u8; DIGEST_LEN],
    },
    /// The answer to a ChatsRequest whose `prev` is not the digest of the
    /// receiver's chat `from - 1` (or `from` is past its history): no
    /// common prefix there.
    NoCommonPrefix {
        /// As in the request.
        from: u32,
        /// As in the request.
        prev: [u8; DIGEST_LEN],
    },
}

impl RelayMessage {
    /// Its type byte.
    pub fn relay_type(&self) -> RelayType {
        match self {
            RelayMessage::Hello { .. } => RelayType::Hello,
            RelayMessage::Tip { .. } => RelayType::Tip,
            RelayMessage::ChatsRequest { .. } => RelayType::ChatsRequest,
            RelayMessage::NoCommonPrefix { .. } => RelayType::NoCommonPrefix,
        }
    }

    /// Bytes on the wire.
    pub fn encoded_len(&self) -> usize {
        1 + self.relay_type().fixed_len()
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.relay_type() as u8);
        match self {
            RelayMessage::Hello { version } => {
                out.extend_from_slice(&RELAY_MAGIC);
                out.push(*version);
            }
            RelayMessage::Tip { len: n, digest: d }
            | RelayMessage::ChatsRequest { from: n, prev: d }
            | RelayMessage::NoCommonPrefix { from: n, prev: d } => {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(d);
            }
        }
    }

    /// The wire form, in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// Parses the fixed part after a type byte; `None` for a Hello without
    /// the magic.
    pub(crate) fn parse(kind: RelayType, body: &[u8]) -> Option<RelayMessage> {
        let n = || u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
        let d = || -> [u8; DIGEST_LEN] { body[4..4 + DIGEST_LEN].try_into().expect("16 bytes") };
        Some(match kind {
            RelayType::Hello if body[..4] == RELAY_MAGIC => {
                RelayMessage::Hello { version: body[4] }
            }
            RelayType::Hello => return None,
            RelayType::Tip => RelayMessage::Tip {
                len: n(),
                digest: d(),
            },
            RelayType::ChatsRequest => RelayMessage::ChatsRequest {
                from: n(),
                prev: d(),
            },
            RelayType::NoCommonPrefix => RelayMessage::NoCommonPrefix {
                from: n(),
                prev: d(),
            },
            RelayType::Chats => unreachable!("Chats is streamed"),
        })
    }
}

/// The header of a Chats message carrying `count` chats from index `from`
/// on, chat `from - 1` having digest `prev`; the chats' wire bytes follow
/// it (as [`History::segments_from`](crate::History::segments_from) gives
/// them).
pub fn chats_header(from: u32, prev: &[u8; DIGEST_LEN], count: u32) -> [u8; CHATS_HEADER_LEN] {
    let mut header = [0; CHATS_HEADER_LEN];
    header[0] = RelayType::Chats as u8;
    header[1..5].copy_from_slice(&from.to_be_bytes());
    header[5..21].copy_from_slice(prev);
    header[21..].copy_from_slice(&count.to_be_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_extension_table() {
        assert_eq!(
            RelayMessage::Hello { version: 1 }.to_bytes(),
            [0x10, b'C', b'C', b'R', b'X', 1]
        );
        let tip = RelayMessage::Tip {
            len: 258,
            digest: [7; 16],
        }
        .to_bytes();
        assert_eq!(tip[..5], [0x11, 0, 0, 1, 2]);
        assert_eq!(tip[5..], [7; 16]);
        assert_eq!(
            RelayMessage::ChatsRequest {
                from: 1,
                prev: [0; 16]
            }
            .to_bytes()[..5],
            [0x12, 0, 0, 0, 1]
        );
        assert_eq!(
            RelayMessage::NoCommonPrefix {
                from: 1,
                prev: [0; 16]
            }
            .to_bytes()[0],
            0x14
        );
        let header = chats_header(3, &[9; 16], 2);
        assert_eq!(header[..5], [0x13, 0, 0, 0, 3]);
        assert_eq!(header[5..21], [9; 16]);
        assert_eq!(header[21..], [0, 0, 0, 2]);
    }
}
