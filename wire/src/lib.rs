//! The chat network's wire format (see `docs/PROTOCOL.md` in the
//! repository): the five messages and the chat history as Rust types, their
//! encoding, and incremental decoders fed with bytes as they arrive from a
//! socket ([`Decoder`] for whole messages, [`FrameDecoder`] for archives
//! chat by chat).
//!
//! This crate does no I/O and no hashing: validity of a history (the MD5
//! rule) lives in the `miner` crate.

#![warn(missing_docs)]

mod chat;
mod decoder;
mod error;
mod history;
mod message;
mod relay;

pub use chat::{Chat, ChatRef, TextTooLong};
pub use decoder::{DEFAULT_MAX_MESSAGE, Decoder, Frame, FrameDecoder, decode, decode_archive};
pub use error::DecodeError;
pub use history::{CHUNK_CHATS, ChunkPool, History, MalformedChat};
pub use message::{Message, MessageType};
pub use relay::{
    CHATS_HEADER_LEN, RELAY_MAGIC, RELAY_VERSION, RelayMessage, RelayType, chats_header,
};

/// Bytes of a chat's verification code.
pub const CODE_LEN: usize = 16;
/// Bytes of a chat's MD5 digest.
pub const DIGEST_LEN: usize = 16;
/// The longest chat text: its length travels in one byte.
pub const MAX_TEXT: usize = 255;
/// Bytes of a chat on the wire besides its text: length byte, code, digest.
pub const CHAT_OVERHEAD: usize = 1 + CODE_LEN + DIGEST_LEN;
/// Number of chats (the chat itself and up to 19 before it) whose bytes
/// make up the window hashed to check one chat.
pub const WINDOW_CHATS: usize = 20;
