//! Keys of the one sled tree: a prefix byte, `/`, and the record's own key.

use super::{P_AUDIT, P_GRANT, P_IDEMPOTENCY};
use crate::domain::Grant;
use uuid::Uuid;

pub(super) fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + rest.len());
    k.push(prefix);
    k.push(b'/');
    k.extend_from_slice(rest);
    k
}

/// Grants are keyed by identity, run, tool and server. Grants stored by older versions had
/// no identity: their key (run, tool, server) is kept so they can still be found and dropped.
pub(super) fn grant_key(g: &Grant) -> Vec<u8> {
    let (run, tool, server) = (&g.run_id, &g.tool, g.server.as_deref());
    let mut out = match &g.identity {
        Some(identity) => {
            let mut k = key(P_GRANT, identity.as_bytes());
            k.push(0);
            k.push(b'@');
            k.extend_from_slice(run.as_bytes());
            k
        }
        None => key(P_GRANT, run.as_bytes()),
    };
    out.push(0);
    out.extend_from_slice(tool.as_bytes());
    out.push(0);
    out.extend_from_slice(server.unwrap_or("").as_bytes());
    out
}

pub(super) fn idempotency_key(identity: &str, k: &str) -> Vec<u8> {
    let mut out = key(P_IDEMPOTENCY, identity.as_bytes());
    out.push(0);
    out.extend_from_slice(k.as_bytes());
    out
}

pub(super) fn show_key(k: &[u8]) -> String {
    if k.len() == 18
        && let Ok(id) = Uuid::from_slice(&k[2..])
    {
        return format!("{}/{}", k[0] as char, id);
    }
    if k.len() == 10 && k[0] == P_AUDIT {
        let mut b = [0u8; 8];
        b.copy_from_slice(&k[2..]);
        return format!("audit seq {}", u64::from_be_bytes(b));
    }
    String::from_utf8_lossy(k).into_owned()
}
