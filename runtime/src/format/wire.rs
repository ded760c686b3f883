//! Confluent's wire format: magic byte 0, the schema's id in the registry (4 bytes, big
//! endian), then the payload. Pure.

/// The first byte of every framed record.
pub const MAGIC: u8 = 0;

/// Why bytes are not a framed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "{0} byte(s) are too few for Confluent's wire format (magic byte and 4-byte schema id)"
    )]
    TooShort(usize),
    #[error(
        "the first byte is {0:#04x}, not Confluent's magic byte 0x00: not written by a schema registry serializer"
    )]
    Magic(u8),
}

/// The schema id and payload of a framed record.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    let Some((&first, rest)) = bytes.split_first() else {
        return Err(WireError::TooShort(0));
    };
    if first != MAGIC {
        return Err(WireError::Magic(first));
    }
    let Some((id, payload)) = rest.split_first_chunk::<4>() else {
        return Err(WireError::TooShort(bytes.len()));
    };
    Ok((u32::from_be_bytes(*id), payload))
}

/// `payload` framed with `id`.
pub fn frame(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + payload.len());
    framed.push(MAGIC);
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_payload_splits_into_its_id_and_payload() {
        let framed = frame(0x0102_0304, b"datum");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert_eq!(split(&framed), Ok((0x0102_0304, &b"datum"[..])));
        assert_eq!(split(&frame(7, b"")), Ok((7, &b""[..])));
    }

    #[test]
    fn bytes_that_are_not_framed_say_why() {
        assert_eq!(split(b""), Err(WireError::TooShort(0)));
        assert_eq!(split(&[0, 0, 1]), Err(WireError::TooShort(3)));
        assert_eq!(split(b"{\"id\":1}"), Err(WireError::Magic(b'{')));
    }
}
