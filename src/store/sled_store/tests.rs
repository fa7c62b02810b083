use super::*;
use crate::domain::{self, ApprovalStatus, AuditKind, PolicyRef};
use serde_json::json;

fn approval(queue: &str) -> Approval {
    let args = json!({"order_id": "A-1", "amount": 75})
        .as_object()
        .cloned()
        .unwrap_or_default();
    Approval {
        id: Uuid::now_v7(),
        run_id: None,
        agent: Some("bot".into()),
        agent_verified: true,
        tool: "issue_refund".into(),
        server_verified: true,
        server: None,
        arguments_sha256: domain::arguments_sha256(&args),
        arguments: args,
        requested_arguments: None,
        context: None,
        reasoning: None,
        requested_by: "bot".into(),
        queue: queue.into(),
        tier: 0,
        policy: PolicyRef {
            name: None,
            rule: None,
            reason: "test".into(),
        },
        created_at: domain::now(),
        expires_at: None,
        escalates_at: None,
        status: ApprovalStatus::Pending,
        decision: None,
        editable: false,
        outcome_unknown: false,
        approvals_needed: None,
        approved_by: Vec::new(),
    }
}

fn record(seq: u64, a: &Approval) -> AuditRecord {
    let mut r = AuditRecord {
        seq,
        at: domain::now(),
        kind: AuditKind::ApprovalCreated,
        actor: "bot".into(),
        approval_id: Some(a.id),
        run_id: None,
        details: json!({"approval": a}),
        prev_hash: domain::GENESIS_HASH.into(),
        hash: String::new(),
    };
    r.hash = r.compute_hash();
    r
}

/// Write `a` as it stands with its record `seq`.
fn write(s: &SledStore, seq: u64, a: &Approval) {
    s.write_approval(ApprovalWrite {
        approval: a,
        audit: &record(seq, a),
        idempotency: None,
        grant: None,
    })
    .unwrap();
}

#[test]
fn writes_survive_reopen_and_pending_index_follows_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = approval("primary");
    let b = approval("backup");
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.write_approval(ApprovalWrite {
            approval: &a,
            audit: &record(1, &a),
            idempotency: Some(("bot", "k1")),
            grant: None,
        })
        .unwrap();
        write(&s, 2, &b);
        a.status = ApprovalStatus::Approved;
        write(&s, 3, &a);
        s.syncer().sync().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, b.id);
    assert_eq!(
        s.approval(a.id).unwrap().unwrap().status,
        ApprovalStatus::Approved
    );
    assert_eq!(s.idempotent("bot", "k1").unwrap(), Some(a.id));
    assert_eq!(s.idempotent("other", "k1").unwrap(), None);
    let audit = s.audit_after(1, 10).unwrap();
    assert_eq!(audit.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.audit_rev().next().unwrap().unwrap().seq, 3);
    // Only approvals no longer pending are in the decided range.
    let listed: Vec<_> = s.approvals_after(None).map(|r| r.unwrap().id).collect();
    assert_eq!(listed, vec![a.id]);
    assert_eq!(
        s.approval(b.id).unwrap().unwrap().status,
        ApprovalStatus::Pending
    );
}

/// A data directory of schema 1 (the approval index beside the records in the default tree,
/// a pending entry only its record's seq), made from a current one by moving the index back,
/// cutting the summaries off and writing the old version.
fn downgrade_to_schema_1(dir: &Path) {
    let db = open_sled(&dir.join(SLED_DIR)).unwrap();
    let index = db.open_tree(INDEX_TREE).unwrap();
    for item in index.iter() {
        let (k, v) = item.unwrap();
        db.insert(&k, &v[..8]).unwrap();
        index.remove(&k).unwrap();
    }
    db.insert(META_SCHEMA, b"1").unwrap();
    db.flush().unwrap();
    fs::write(dir.join(MARKER), "gatehouse data directory\nschema = 1\n").unwrap();
}

fn approval_keys(tree: &sled::Tree) -> usize {
    [P_PENDING, P_APPROVAL]
        .iter()
        .map(|p| tree.scan_prefix([*p, b'/']).count())
        .sum()
}

#[test]
fn a_schema_1_directory_is_upgraded_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = approval("primary");
    let b = approval("backup");
    {
        let s = SledStore::open(dir.path()).unwrap();
        write(&s, 1, &a);
        write(&s, 2, &b);
        a.status = ApprovalStatus::Approved;
        write(&s, 3, &a);
        s.syncer().sync().unwrap();
    }
    downgrade_to_schema_1(dir.path());
    {
        let db = open_sled(&dir.path().join(SLED_DIR)).unwrap();
        assert_eq!(
            approval_keys(&db),
            2,
            "schema 1: the index in the default tree"
        );
    }
    // Reading the audit log (`gatehouse audit`) leaves an older directory as it is.
    {
        let s = SledStore::open_audit_log(dir.path()).unwrap();
        let seqs: Vec<u64> = s
            .audit_after(0, 10)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(
            s.pending().unwrap().len(),
            1,
            "read where schema 1 keeps it"
        );
        assert_eq!(s.check_meta().unwrap(), 1);
    }
    let marker = fs::read_to_string(dir.path().join(MARKER)).unwrap();
    assert!(marker.contains("schema = 1"), "{marker}");
    let check = |s: &SledStore| {
        let pending = s.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, b.id);
        let settled: Vec<_> = s.approvals_after(None).map(|r| r.unwrap().id).collect();
        assert_eq!(settled, vec![a.id]);
        assert_eq!(
            s.approval(a.id).unwrap().unwrap().status,
            ApprovalStatus::Approved
        );
        assert_eq!(approval_keys(&s.db), 0, "nothing of the index left behind");
        assert_eq!(approval_keys(&s.index), 2);
        let mut summaries = Vec::new();
        s.pending_summaries(&mut |p| summaries.push(p)).unwrap();
        assert_eq!(
            summaries
                .iter()
                .map(|p| (p.id, p.queue.as_str()))
                .collect::<Vec<_>>(),
            vec![(b.id, "backup")],
            "the pending entry carries its summary"
        );
    };
    {
        let s = SledStore::open(dir.path()).unwrap();
        check(&s);
        assert_eq!(s.check_meta().unwrap(), SCHEMA_VERSION);
    }
    let marker = fs::read_to_string(dir.path().join(MARKER)).unwrap();
    assert!(
        marker.contains(&format!("schema = {SCHEMA_VERSION}")),
        "{marker}"
    );

    // An upgrade cut short after the metadata, before the marker: the next start finishes it.
    fs::write(
        dir.path().join(MARKER),
        "gatehouse data directory\nschema = 1\n",
    )
    .unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    check(&s);
    drop(s);
    let marker = fs::read_to_string(dir.path().join(MARKER)).unwrap();
    assert!(
        marker.contains(&format!("schema = {SCHEMA_VERSION}")),
        "{marker}"
    );
}

#[test]
fn second_open_is_refused_with_pid() {
    let dir = tempfile::tempdir().unwrap();
    let _s = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "data directory {} is in use by PID {}",
            dir.path().display(),
            std::process::id()
        )
    );
}

#[test]
fn foreign_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = SledStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(
        err.to_string().contains("not a gatehouse data directory"),
        "{err}"
    );
    // Nothing was created or removed.
    assert!(!dir.path().join(MARKER).exists());
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn garbage_database_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let a = approval("primary");
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.write_approval(ApprovalWrite {
            approval: &a,
            audit: &record(1, &a),
            idempotency: None,
            grant: None,
        })
        .unwrap();
        s.syncer().sync().unwrap();
    }
    let db = dir.path().join(SLED_DIR).join("db");
    let len = fs::metadata(&db).unwrap().len() as usize;
    fs::write(&db, vec![0xA5u8; len.max(4096)]).unwrap();
    for f in fs::read_dir(dir.path().join(SLED_DIR)).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            fs::remove_file(p).unwrap();
        }
    }
    let err = SledStore::open(dir.path())
        .err()
        .expect("corrupt store must be refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("is corrupt"), "{err}");
}

#[test]
fn missing_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open(dir.path()).unwrap());
    fs::remove_dir_all(dir.path().join(SLED_DIR)).unwrap();
    let err = SledStore::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("store/db is missing"), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open(dir.path()).unwrap());
    fs::write(
        dir.path().join(MARKER),
        "gatehouse data directory\nschema = 99\n",
    )
    .unwrap();
    let err = SledStore::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn checksum_mismatch_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let a = approval("primary");
    s.write_approval(ApprovalWrite {
        approval: &a,
        audit: &record(1, &a),
        idempotency: None,
        grant: None,
    })
    .unwrap();
    let k = key(P_AUDIT, &1u64.to_be_bytes());
    let mut raw = s.db.get(&k).unwrap().unwrap().to_vec();
    let n = raw.len();
    raw[n - 3] ^= 0x01;
    s.db.insert(&k, raw).unwrap();
    let err = s.pending().err().unwrap();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(err.to_string().contains("audit seq 1"), "{err}");
}

#[test]
fn redo_restores_entries_a_crash_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = approval("primary");
    let r2;
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.write_approval(ApprovalWrite {
            approval: &a,
            audit: &record(1, &a),
            idempotency: None,
            grant: None,
        })
        .unwrap();
        // The decision's audit record lands, its derived entries do not (as after a crash).
        a.status = ApprovalStatus::Denied;
        r2 = record(2, &a);
        s.write_audit(&r2).unwrap();
        s.syncer().sync().unwrap();
        assert_eq!(
            s.pending().unwrap().len(),
            1,
            "before redo the index is stale"
        );
    }
    let s = SledStore::open(dir.path()).unwrap();
    s.redo_last(&r2).unwrap();
    assert!(s.pending().unwrap().is_empty());
    assert_eq!(
        s.approval(a.id).unwrap().unwrap().status,
        ApprovalStatus::Denied
    );
}

#[test]
fn large_values_go_to_blobs_and_are_synced() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut a = approval("primary");
    a.arguments
        .insert("blob".into(), json!("x".repeat(900 * 1024)));
    s.write_approval(ApprovalWrite {
        approval: &a,
        audit: &record(1, &a),
        idempotency: None,
        grant: None,
    })
    .unwrap();
    s.syncer().sync().unwrap();
    let synced = s.syncer.synced_blobs.lock().unwrap().len();
    let on_disk = fs::read_dir(dir.path().join(SLED_DIR).join("blobs"))
        .unwrap()
        .count();
    assert!(on_disk > 0, "a 900 KiB value should be a sled blob");
    assert_eq!(synced, on_disk);
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        s.approval(a.id).unwrap().unwrap().arguments["blob"]
            .as_str()
            .unwrap()
            .len(),
        900 * 1024
    );
}

/// Where a group commit's time goes: `cargo test --release --lib store::tests::commit_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn commit_cost() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut seq = 0;
    let (mut t_flush, mut t_fsync, mut t_blobs) = (0.0, 0.0, 0.0);
    let rounds = 500;
    for _ in 0..rounds {
        for _ in 0..22 {
            seq += 1;
            let a = approval("primary");
            s.write_approval(ApprovalWrite {
                approval: &a,
                audit: &record(seq, &a),
                idempotency: None,
                grant: None,
            })
            .unwrap();
        }
        let t = std::time::Instant::now();
        s.db.flush().unwrap();
        let t1 = std::time::Instant::now();
        s.syncer.log_file.sync_all().unwrap();
        let t2 = std::time::Instant::now();
        s.syncer.sync_new_blobs().unwrap();
        let t3 = std::time::Instant::now();
        t_flush += (t1 - t).as_secs_f64();
        t_fsync += (t2 - t1).as_secs_f64();
        t_blobs += (t3 - t2).as_secs_f64();
    }
    let ms = |x: f64| x * 1000.0 / rounds as f64;
    println!(
        "per commit of 22 writes: sled flush {:.3} ms, fsync {:.3} ms, blob scan {:.3} ms",
        ms(t_flush),
        ms(t_fsync),
        ms(t_blobs)
    );
}

/// What a start reads: the pending approvals' summaries (each record checked) and the
/// records that settled approvals, found by their pointers.
#[test]
fn a_start_reads_checked_summaries_and_settled_records_by_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut a = approval("primary");
    a.run_id = Some("run-1".into());
    a.expires_at = Some(domain::now() + chrono::Duration::minutes(5));
    let mut b = approval("backup");
    let writes = [(1, a.clone()), (2, b.clone())];
    b.status = ApprovalStatus::Denied;
    for (seq, ap) in writes.iter().chain([(3, b.clone())].iter()) {
        s.write_approval(ApprovalWrite {
            approval: ap,
            audit: &record(*seq, ap),
            idempotency: None,
            grant: None,
        })
        .unwrap();
    }
    let mut summaries = Vec::new();
    s.pending_summaries(&mut |p| summaries.push(p)).unwrap();
    assert_eq!(summaries.len(), 1);
    let p = &summaries[0];
    assert_eq!(
        (
            p.id,
            p.queue.as_str(),
            p.run_id.as_deref(),
            p.next_deadline()
        ),
        (a.id, "primary", Some("run-1"), a.expires_at)
    );
    let settled: Vec<u64> = s.settled_rev().unwrap().map(|r| r.unwrap().seq).collect();
    assert_eq!(settled, vec![3]);

    // A start reads the index entries, not the records.
    let k = key(P_AUDIT, &1u64.to_be_bytes());
    let record = s.db.remove(&k).unwrap().unwrap();
    let mut again = Vec::new();
    s.pending_summaries(&mut |p| again.push(p.id)).unwrap();
    assert_eq!(again, vec![a.id]);
    s.db.insert(&k, record).unwrap();

    // A damaged entry stops the start, and so does one that names another approval.
    let pk = key(P_PENDING, a.id.as_bytes());
    let good = s.index.get(&pk).unwrap().unwrap().to_vec();
    let mut raw = good.clone();
    let n = raw.len();
    raw[n - 3] ^= 0x01;
    s.index.insert(&pk, raw).unwrap();
    let err = s.pending_summaries(&mut |_| {}).err().unwrap();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let other = pending::entry(1, &pending::SummaryRef::of(&b));
    s.index.insert(&pk, other).unwrap();
    let err = s.pending_summaries(&mut |_| {}).err().unwrap();
    assert!(err.to_string().contains("is of approval"), "{err}");
    s.index.insert(&pk, &good[..8]).unwrap();
    let err = s.pending_summaries(&mut |_| {}).err().unwrap();
    assert!(err.to_string().contains("no summary"), "{err}");
}

/// Benchmark, not a check (ignored: it prints the figures the README quotes and asserts
/// nothing timed). What sled itself costs per submission, without flushes: the store's write (record and
/// pending pointer) against the record alone, the pointer alone and a small record
/// (`cargo test --release --lib store::sled_store::tests::insert_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn insert_cost() {
    const N: u64 = 100_000;
    let written: Vec<(Approval, AuditRecord)> = (1..=N)
        .map(|seq| {
            let a = approval("primary");
            let r = record(seq, &a);
            (a, r)
        })
        .collect();
    let bytes = envelope::encode(&written[0].1).len();
    let per = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e6 / N as f64;

    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let t = std::time::Instant::now();
    for (a, r) in &written {
        s.write_approval(ApprovalWrite {
            approval: a,
            audit: r,
            idempotency: None,
            grant: None,
        })
        .unwrap();
    }
    let store = per(t);

    let raw = |value_len: Option<usize>, pointer: bool, trees: bool| {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let pointers = if trees {
            s.db.open_tree("pointers").unwrap()
        } else {
            (*s.db).clone()
        };
        let bodies: Vec<Vec<u8>> = written
            .iter()
            .map(|(_, r)| {
                let mut b = envelope::encode(r);
                if let Some(n) = value_len {
                    b.truncate(n);
                }
                b
            })
            .collect();
        let t = std::time::Instant::now();
        for ((a, r), body) in written.iter().zip(&bodies) {
            if value_len != Some(0) {
                let k = key(P_AUDIT, &r.seq.to_be_bytes());
                s.db.insert(k, body.as_slice()).unwrap();
            }
            if pointer {
                let k = key(P_PENDING, a.id.as_bytes());
                pointers.insert(k, &r.seq.to_be_bytes()[..]).unwrap();
            }
        }
        per(t)
    };
    println!(
        "per submission, {N} in a row, no flush: the store's write {store:.2} µs \
         (record {bytes} bytes + pointer: {:.2} µs in raw inserts, {:.2} µs with the pointers \
         in a tree of their own); the record alone {:.2} µs; a 100-byte record alone {:.2} µs; \
         the pointer alone {:.2} µs",
        raw(None, true, false),
        raw(None, true, true),
        raw(None, false, false),
        raw(Some(100), false, false),
        raw(Some(0), true, false),
    );
}
