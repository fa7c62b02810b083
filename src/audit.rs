//! Verifying the audit log's hash chain, from a store or from an export.
//!
//! An export is JSON lines: one audit record per line, then a trailer
//! `{"end_of_export": {"records": N, "last_seq": S, "last_hash": H}}`, so that a file cut at
//! a line boundary is told apart from a complete one.

use crate::domain::{AuditRecord, GENESIS_HASH};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: String,
}

#[derive(Serialize, Deserialize)]
struct TrailerLine {
    end_of_export: Trailer,
}

pub fn trailer_line(t: &Trailer) -> String {
    serde_json::to_string(&TrailerLine {
        end_of_export: t.clone(),
    })
    .unwrap_or_default()
}

/// Checks records one by one, in order.
#[derive(Default)]
pub struct ChainCheck {
    prev: Option<(u64, String)>,
    pub count: u64,
}

impl ChainCheck {
    /// `where_` names the record's place (e.g. `line 12`) in messages.
    pub fn push(&mut self, r: &AuditRecord, where_: &str) -> Result<(), String> {
        if r.compute_hash() != r.hash {
            return Err(format!(
                "record seq {} ({where_}) was edited: its hash does not match its contents",
                r.seq
            ));
        }
        match &self.prev {
            None => {
                if r.seq == 1 && r.prev_hash != GENESIS_HASH {
                    return Err(format!("record seq 1 ({where_}) does not start the chain"));
                }
            }
            Some((seq, hash)) => {
                if r.seq != seq + 1 {
                    return Err(if r.seq > seq + 1 {
                        format!(
                            "record seq {} ({where_}) follows seq {seq}: record(s) {}..{} were removed",
                            r.seq,
                            seq + 1,
                            r.seq - 1
                        )
                    } else {
                        format!(
                            "record seq {} ({where_}) follows seq {seq}: records are out of order",
                            r.seq
                        )
                    });
                }
                if &r.prev_hash != hash {
                    return Err(format!(
                        "record seq {} ({where_}) does not link to seq {seq}: its prev_hash differs",
                        r.seq
                    ));
                }
            }
        }
        self.prev = Some((r.seq, r.hash.clone()));
        self.count += 1;
        Ok(())
    }

    pub fn last(&self) -> Option<(u64, &str)> {
        self.prev.as_ref().map(|(s, h)| (*s, h.as_str()))
    }
}

/// Verify an export's text. Ok carries the number of records.
pub fn verify_export(text: &str) -> Result<u64, String> {
    let mut records: Vec<(usize, AuditRecord)> = Vec::new();
    let mut trailer: Option<(usize, Trailer)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((tn, _)) = &trailer {
            return Err(format!(
                "line {n} follows the end-of-export line (line {tn})"
            ));
        }
        if let Ok(t) = serde_json::from_str::<TrailerLine>(line) {
            trailer = Some((n, t.end_of_export));
            continue;
        }
        let r: AuditRecord = serde_json::from_str(line).map_err(|e| match records.last() {
            Some((_, prev)) => format!(
                "line {n} (after record seq {}) is not a complete audit record: {e}",
                prev.seq
            ),
            None => format!("line {n} is not a complete audit record: {e}"),
        })?;
        records.push((n, r));
    }
    let mut check = ChainCheck::default();
    for (n, r) in &records {
        if let Err(e) = check.push(r, &format!("line {n}")) {
            // A gap whose missing record stands later in the file is a reordering.
            if let Some((prev, _)) = check.last().filter(|(prev, _)| r.seq > prev + 1)
                && let Some((m, _)) = records.iter().find(|(_, x)| x.seq == prev + 1)
            {
                return Err(format!(
                    "records are out of order: seq {} stands at line {m}, after seq {} at line {n}",
                    prev + 1,
                    r.seq
                ));
            }
            return Err(e);
        }
    }
    let Some((_, t)) = trailer else {
        return Err(match check.last() {
            Some((seq, _)) => format!(
                "the export is truncated: it ends after record seq {seq} with no end-of-export line"
            ),
            None => "the export is empty or truncated: no records and no end-of-export line".into(),
        });
    };
    let (seq, hash) = check.last().unwrap_or((0, GENESIS_HASH));
    if t.records != check.count || t.last_seq != seq || t.last_hash != hash {
        return Err(format!(
            "the export is truncated or altered: its end-of-export line promises {} records ending at seq {}, the file holds {} ending at seq {seq}",
            t.records, t.last_seq, check.count
        ));
    }
    Ok(check.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditKind, now};
    use serde_json::json;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq,
                    at: now(),
                    kind: AuditKind::ApprovalCreated,
                    actor: "bot".into(),
                    approval_id: None,
                    run_id: None,
                    details: json!({"n": seq}),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = r.compute_hash();
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn export(records: &[AuditRecord]) -> Vec<String> {
        let mut lines: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let last = records.last().unwrap();
        lines.push(trailer_line(&Trailer {
            records: records.len() as u64,
            last_seq: last.seq,
            last_hash: last.hash.clone(),
        }));
        lines
    }

    #[test]
    fn intact_export_verifies() {
        assert_eq!(verify_export(&export(&chain(5)).join("\n")), Ok(5));
    }

    #[test]
    fn edited_field_is_named() {
        let mut lines = export(&chain(5));
        lines[2] = lines[2].replace("\"bot\"", "\"mallory\"");
        let e = verify_export(&lines.join("\n")).unwrap_err();
        assert_eq!(
            e,
            "record seq 3 (line 3) was edited: its hash does not match its contents"
        );
    }

    #[test]
    fn removed_line_is_named() {
        let mut lines = export(&chain(5));
        lines.remove(1);
        let e = verify_export(&lines.join("\n")).unwrap_err();
        assert_eq!(
            e,
            "record seq 3 (line 2) follows seq 1: record(s) 2..2 were removed"
        );
    }

    #[test]
    fn swapped_lines_are_named() {
        let mut lines = export(&chain(5));
        lines.swap(1, 2);
        let e = verify_export(&lines.join("\n")).unwrap_err();
        assert_eq!(
            e,
            "records are out of order: seq 2 stands at line 3, after seq 3 at line 2"
        );
    }

    #[test]
    fn truncated_tail_is_named() {
        let lines = export(&chain(5));
        // Cut at a line boundary: the trailer is gone.
        let e = verify_export(&lines[..3].join("\n")).unwrap_err();
        assert_eq!(
            e,
            "the export is truncated: it ends after record seq 3 with no end-of-export line"
        );
        // Cut inside a line.
        let text = lines.join("\n");
        let e = verify_export(&text[..text.len() / 2]).unwrap_err();
        assert!(e.contains("is not a complete audit record"), "{e}");
    }

    #[test]
    fn removing_the_last_records_but_keeping_the_trailer_is_caught() {
        let mut lines = export(&chain(5));
        lines.remove(4);
        let e = verify_export(&lines.join("\n")).unwrap_err();
        assert!(e.starts_with("the export is truncated or altered"), "{e}");
    }
}
