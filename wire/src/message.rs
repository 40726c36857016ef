use std::net::Ipv4Addr;

use crate::History;

/// The type byte that starts every message (PROTOCOL.md, "Messages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// 0x01, nothing follows.
    PeerRequest = 0x01,
    /// 0x02, then u32 N and N IPv4 addresses.
    PeerList = 0x02,
    /// 0x03, nothing follows.
    ArchiveRequest = 0x03,
    /// 0x04, then u32 C and C chats.
    ArchiveResponse = 0x04,
    /// 0x05, then u8 N and N bytes of text.
    Notification = 0x05,
}

impl MessageType {
    /// The type a first byte names; `None` for any byte but 0x01..=0x05.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => MessageType::PeerRequest,
            0x02 => MessageType::PeerList,
            0x03 => MessageType::ArchiveRequest,
            0x04 => MessageType::ArchiveResponse,
            0x05 => MessageType::Notification,
            _ => return None,
        })
    }
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Asks for the peer's PeerList.
    PeerRequest,
    /// The addresses of the peers the sender knows and is connected to.
    PeerList(Vec<Ipv4Addr>),
    /// Asks for the peer's ArchiveResponse.
    ArchiveRequest,
    /// The sender's whole history.
    ArchiveResponse(History),
    /// Free text. Received bytes are kept as they came (not always ASCII);
    /// encoding sends at most the first 255.
    Notification(Vec<u8>),
}

impl Message {
    /// The type byte this message starts with.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::PeerRequest => MessageType::PeerRequest,
            Message::PeerList(_) => MessageType::PeerList,
            Message::ArchiveRequest => MessageType::ArchiveRequest,
            Message::ArchiveResponse(_) => MessageType::ArchiveResponse,
            Message::Notification(_) => MessageType::Notification,
        }
    }

    /// Bytes of this message on the wire.
    pub fn encoded_len(&self) -> usize {
        match self {
            Message::PeerRequest | Message::ArchiveRequest => 1,
            Message::PeerList(addrs) => 5 + 4 * addrs.len(),
            Message::ArchiveResponse(history) => history.archive_len(),
            Message::Notification(text) => 2 + text.len().min(255),
        }
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        match self {
            Message::PeerRequest | Message::ArchiveRequest => out.push(self.message_type() as u8),
            Message::PeerList(addrs) => {
                out.push(MessageType::PeerList as u8);
                out.extend_from_slice(&(addrs.len() as u32).to_be_bytes());
                for addr in addrs {
                    out.extend_from_slice(&addr.octets());
                }
            }
            Message::ArchiveResponse(history) => history.encode_archive(out),
            Message::Notification(text) => {
                let text = &text[..text.len().min(255)];
                out.push(MessageType::Notification as u8);
                out.push(text.len() as u8);
                out.extend_from_slice(text);
            }
        }
    }

    /// The wire form, in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_protocol_table() {
        assert_eq!(Message::PeerRequest.to_bytes(), [1]);
        assert_eq!(Message::ArchiveRequest.to_bytes(), [3]);
        assert_eq!(
            Message::PeerList(vec![
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(127, 1, 2, 3)
            ])
            .to_bytes(),
            [2, 0, 0, 0, 2, 10, 0, 0, 1, 127, 1, 2, 3]
        );
        assert_eq!(
            Message::ArchiveResponse(History::new()).to_bytes(),
            [4, 0, 0, 0, 0]
        );
        assert_eq!(
            Message::Notification(b"hi".to_vec()).to_bytes(),
            [5, 2, b'h', b'i']
        );
    }

    #[test]
    fn notification_is_cut_to_255_bytes() {
        let bytes = Message::Notification(vec![b'a'; 300]).to_bytes();
        assert_eq!(bytes.len(), 257);
        assert_eq!(bytes[1], 255);
    }
}
