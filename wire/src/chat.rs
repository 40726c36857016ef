use std::fmt;

use crate::{CHAT_OVERHEAD, CODE_LEN, DIGEST_LEN, MAX_TEXT};

/// An owned chat: text, verification code and MD5 digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Chat {
    text: Vec<u8>,
    code: [u8; CODE_LEN],
    digest: [u8; DIGEST_LEN],
}

/// A chat text longer than [`MAX_TEXT`] bytes cannot be encoded; holds the
/// length given, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTooLong(pub usize);

impl fmt::Display for TextTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chat text is {} bytes, the most is {MAX_TEXT}", self.0)
    }
}

impl std::error::Error for TextTooLong {}

impl Chat {
    /// A chat of `text` (any bytes, PROTOCOL.md), its 16-byte verification
    /// code and its 16-byte MD5 digest. Nothing is checked but the length:
    /// validity is the `miner` crate's business.
    ///
    /// # Errors
    /// [`TextTooLong`] if `text` is longer than [`MAX_TEXT`] (255) bytes.
    pub fn new(
        text: impl Into<Vec<u8>>,
        code: [u8; CODE_LEN],
        digest: [u8; DIGEST_LEN],
    ) -> Result<Self, TextTooLong> {
        let text = text.into();
        if text.len() > MAX_TEXT {
            return Err(TextTooLong(text.len()));
        }
        Ok(Chat { text, code, digest })
    }

    /// The text, 0 to 255 bytes.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The verification code found by mining.
    pub fn code(&self) -> &[u8; CODE_LEN] {
        &self.code
    }

    /// The MD5 digest of the chat's window (two zero bytes first in a
    /// valid chat).
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// Bytes of this chat on the wire.
    pub fn encoded_len(&self) -> usize {
        CHAT_OVERHEAD + self.text.len()
    }

    /// Appends the wire form `[u8 N][text][code][digest]` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        // `new` guarantees the length fits in a byte.
        out.push(self.text.len() as u8);
        out.extend_from_slice(&self.text);
        out.extend_from_slice(&self.code);
        out.extend_from_slice(&self.digest);
    }
}

impl fmt::Debug for Chat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat")
            .field("text", &String::from_utf8_lossy(&self.text))
            .field("code", &hex(&self.code))
            .field("digest", &hex(&self.digest))
            .finish()
    }
}

/// A chat borrowed from a [`History`](crate::History): a view of its wire
/// bytes, which the history has already checked to be well formed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChatRef<'a> {
    bytes: &'a [u8],
}

impl<'a> ChatRef<'a> {
    /// `bytes` must be exactly one well-formed chat.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        debug_assert_eq!(bytes.len(), CHAT_OVERHEAD + bytes[0] as usize);
        ChatRef { bytes }
    }

    /// The text, 0 to 255 bytes.
    pub fn text(&self) -> &'a [u8] {
        &self.bytes[1..self.bytes.len() - CODE_LEN - DIGEST_LEN]
    }

    /// The verification code.
    pub fn code(&self) -> &'a [u8; CODE_LEN] {
        let end = self.bytes.len() - DIGEST_LEN;
        self.bytes[end - CODE_LEN..end]
            .try_into()
            .expect("16 bytes")
    }

    /// The MD5 digest field.
    pub fn digest(&self) -> &'a [u8; DIGEST_LEN] {
        self.bytes[self.bytes.len() - DIGEST_LEN..]
            .try_into()
            .expect("16 bytes")
    }

    /// The chat's whole wire form.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// An owned copy.
    pub fn to_chat(&self) -> Chat {
        Chat {
            text: self.text().to_vec(),
            code: *self.code(),
            digest: *self.digest(),
        }
    }
}

impl fmt::Debug for ChatRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_chat().fmt(f)
    }
}

impl PartialEq<Chat> for ChatRef<'_> {
    fn eq(&self, other: &Chat) -> bool {
        self.text() == other.text()
            && self.code() == other.code()
            && self.digest() == other.digest()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
