//! Record envelope: magic, schema version, CRC-32 of the body, JSON body.

use serde::{Serialize, de::DeserializeOwned};

/// 2: the approval index has a sled tree of its own; 3: a pending approval's index entry
/// carries what a start indexes it by (see `sled_store::upgrade`).
pub const SCHEMA_VERSION: u32 = 3;
const MAGIC: u8 = b'G';
const HEADER: usize = 6;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, value);
    out
}

/// [`encode`], appended to `out`.
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    out.extend_from_slice(&[MAGIC, SCHEMA_VERSION as u8, 0, 0, 0, 0]);
    // Serialising our own types into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).unwrap_or_default();
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 2..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// A body already serialised as JSON.
pub fn encode_text(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.extend_from_slice(&[MAGIC, SCHEMA_VERSION as u8, 0, 0, 0, 0]);
    out.extend_from_slice(json.as_bytes());
    let crc = crc32fast::hash(&out[HEADER..]);
    out[2..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

pub enum DecodeError {
    Newer(u32),
    Bad(String),
}

pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, DecodeError> {
    if raw.len() < HEADER || raw[0] != MAGIC {
        return Err(DecodeError::Bad("not a gatehouse record".into()));
    }
    let version = u32::from(raw[1]);
    if version > SCHEMA_VERSION {
        return Err(DecodeError::Newer(version));
    }
    if version == 0 {
        return Err(DecodeError::Bad("schema version 0".into()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&raw[2..HEADER]);
    if crc32fast::hash(&raw[HEADER..]) != u32::from_le_bytes(crc) {
        return Err(DecodeError::Bad("checksum mismatch".into()));
    }
    serde_json::from_slice(&raw[HEADER..])
        .map_err(|e| DecodeError::Bad(format!("unreadable body: {e}")))
}
