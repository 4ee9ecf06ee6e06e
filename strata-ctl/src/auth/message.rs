//! The handshake messages as they lie in a `Handshake` packet's payload
//! (after the Strata header), and their parser.
//!
//! ```text
//! initiation (edge → hub), 113 bytes:
//!   kind = 1 (1) | sender index (4, BE) | Noise IK message 1 (108)
//! response (hub → edge), 61 bytes:
//!   kind = 2 (1) | receiver index (4, BE) | Noise IK message 2 (56)
//! ```
//!
//! The parser only splits and checks lengths: it is a pure function of the
//! bytes (a fuzzing target), and everything it lets through is still
//! authenticated by Noise before anything is believed.

/// Length of Noise IK's first message with a [`INITIATION_PAYLOAD`]-byte
/// payload: ephemeral key (32), encrypted static key (32 + 16 tag),
/// encrypted payload (+ 16 tag).
pub const NOISE_INITIATION_LEN: usize = 32 + 48 + INITIATION_PAYLOAD + 16;
/// Length of Noise IK's second message: ephemeral key (32), encrypted
/// payload (+ 16 tag).
pub const NOISE_RESPONSE_LEN: usize = 32 + RESPONSE_PAYLOAD + 16;
/// The initiation's encrypted payload: the edge's timestamp (8, ns since the
/// Unix epoch, BE) and the epoch of the keys it holds (4, BE; 0: none).
pub const INITIATION_PAYLOAD: usize = 12;
/// The response's encrypted payload: the key epoch (4, BE) and the rekey
/// interval the hub asks for (4, seconds, BE; 0: the edge's own).
pub const RESPONSE_PAYLOAD: usize = 8;
/// Bytes in front of the Noise message: kind and index.
pub const PREFIX_LEN: usize = 5;
/// A whole initiation.
pub const INITIATION_LEN: usize = PREFIX_LEN + NOISE_INITIATION_LEN;
/// A whole response.
pub const RESPONSE_LEN: usize = PREFIX_LEN + NOISE_RESPONSE_LEN;

const KIND_INITIATION: u8 = 1;
const KIND_RESPONSE: u8 = 2;

/// A handshake message, split but not yet authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// The edge starts a session.
    Initiation {
        /// Chosen by the edge; the response echoes it.
        sender: u32,
        /// Noise message 1.
        noise: &'a [u8],
    },
    /// The hub's answer.
    Response {
        /// The initiation's sender index.
        receiver: u32,
        /// Noise message 2.
        noise: &'a [u8],
    },
}

/// Why bytes are not a handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No bytes at all.
    #[error("empty handshake payload")]
    Empty,
    /// An unknown first byte.
    #[error("unknown handshake message kind {0}")]
    Kind(u8),
    /// The length does not match the kind.
    #[error("handshake message of kind {kind} is {len} bytes, expected {expected}")]
    Length {
        /// The kind byte.
        kind: u8,
        /// What arrived.
        len: usize,
        /// What that kind always is.
        expected: usize,
    },
}

/// Splits a handshake payload. Pure: no state, no allocation, no panics.
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, ParseError> {
    let (&kind, _) = bytes.split_first().ok_or(ParseError::Empty)?;
    let expected = match kind {
        KIND_INITIATION => INITIATION_LEN,
        KIND_RESPONSE => RESPONSE_LEN,
        other => return Err(ParseError::Kind(other)),
    };
    if bytes.len() != expected {
        return Err(ParseError::Length { kind, len: bytes.len(), expected });
    }
    let index = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let noise = &bytes[PREFIX_LEN..];
    Ok(match kind {
        KIND_INITIATION => Message::Initiation { sender: index, noise },
        _ => Message::Response { receiver: index, noise },
    })
}

/// Frames Noise message 1 as an initiation.
pub(super) fn initiation(sender: u32, noise: &[u8; NOISE_INITIATION_LEN]) -> [u8; INITIATION_LEN] {
    frame(KIND_INITIATION, sender, noise)
}

/// Frames Noise message 2 as a response.
pub(super) fn response(receiver: u32, noise: &[u8; NOISE_RESPONSE_LEN]) -> [u8; RESPONSE_LEN] {
    frame(KIND_RESPONSE, receiver, noise)
}

fn frame<const N: usize, const M: usize>(kind: u8, index: u32, noise: &[u8; N]) -> [u8; M] {
    const { assert!(M == N + PREFIX_LEN) };
    let mut out = [0u8; M];
    out[0] = kind;
    out[1..PREFIX_LEN].copy_from_slice(&index.to_be_bytes());
    out[PREFIX_LEN..].copy_from_slice(noise);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn framing_round_trips() {
        let i = initiation(7, &[3; NOISE_INITIATION_LEN]);
        assert_eq!(parse(&i), Ok(Message::Initiation { sender: 7, noise: &[3; NOISE_INITIATION_LEN] }));
        let r = response(9, &[4; NOISE_RESPONSE_LEN]);
        assert_eq!(parse(&r), Ok(Message::Response { receiver: 9, noise: &[4; NOISE_RESPONSE_LEN] }));
        assert!(parse(&i[..INITIATION_LEN - 1]).unwrap_err().to_string().contains("expected 113"));
        assert_eq!(parse(&[]), Err(ParseError::Empty));
        assert_eq!(parse(&[9]), Err(ParseError::Kind(9)));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = parse(&bytes) {
                let len = match m {
                    Message::Initiation { noise, .. } => noise.len() + PREFIX_LEN,
                    Message::Response { noise, .. } => noise.len() + PREFIX_LEN,
                };
                prop_assert_eq!(len, bytes.len());
            }
        }
    }
}
