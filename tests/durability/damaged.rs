//! Damaged, truncated, unmarked and foreign data directories: refused with a clear message, never reset, left as found.

use super::*;

/// A data directory with a few approvals, shut down cleanly.
fn populated(ws: &Workspace) -> Vec<String> {
    let mut d = ws.start();
    let ids = block_on(async {
        let api = d.api();
        let mut ids = Vec::new();
        for i in 0..5 {
            let a = api.submit_pending(BOT, "deploy", json!({"i": i})).await;
            ids.push(a["id"].as_str().unwrap().to_string());
        }
        assert_eq!(
            api.decide(ALICE, &ids[0], "approve", None).await.status,
            200
        );
        ids
    });
    let status = d.stop();
    assert!(
        status.success(),
        "clean shutdown: {status:?}\n{}",
        d.stderr()
    );
    ids
}

#[track_caller]
fn assert_refused(ws: &Workspace, needle: &str) {
    let out = serve_expecting_failure(&ws.config(), &ws.data());
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains(needle), "no {needle:?} in {out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    let last = out.stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("gatehouse: ") && last.contains(needle),
        "the message is not a clear last line: {last:?}"
    );
}

fn garbage(len: usize) -> Vec<u8> {
    // xorshift: deterministic bytes that are neither zeros nor text.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn remove_snapshots(store: &Path) {
    for e in std::fs::read_dir(store).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

#[test]
fn corrupt_store_is_refused_without_panic() {
    let ws = Workspace::new();
    populated(&ws);
    let store = ws.data().join("store");
    let db = store.join("db");
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    let junk = garbage(len.max(64 * 1024));
    std::fs::write(&db, &junk).unwrap();
    remove_snapshots(&store);
    assert_refused(&ws, "is corrupt");
    // Refused, not reset: the file is still there, no shorter. (sled 0.34 writes a fresh
    // segment over the start of a file it cannot read before gatehouse sees the store, so
    // the bytes are not all as we left them; see the report.)
    assert!(std::fs::metadata(&db).unwrap().len() >= junk.len() as u64);
    // Still refused the second time: nothing was "repaired" into an empty store.
    assert_refused(&ws, "is corrupt");
}

#[test]
fn truncated_or_missing_store_is_refused() {
    // An empty database file.
    let ws = Workspace::new();
    populated(&ws);
    let store = ws.data().join("store");
    std::fs::write(store.join("db"), b"").unwrap();
    remove_snapshots(&store);
    assert_refused(&ws, "is corrupt");

    // No database at all.
    let ws = Workspace::new();
    populated(&ws);
    std::fs::remove_dir_all(ws.data().join("store")).unwrap();
    assert_refused(&ws, "is corrupt");
}

#[test]
fn marker_problems_are_refused() {
    // Written by a newer gatehouse.
    let ws = Workspace::new();
    populated(&ws);
    std::fs::write(
        ws.data().join("GATEHOUSE"),
        "gatehouse data directory\nschema = 99\n",
    )
    .unwrap();
    assert_refused(&ws, "newer gatehouse");

    // A marker that is not ours.
    let ws = Workspace::new();
    populated(&ws);
    std::fs::write(ws.data().join("GATEHOUSE"), "something else\n").unwrap();
    assert_refused(&ws, "not a gatehouse data directory");
}

#[test]
fn lost_marker_does_not_reset_the_store() {
    // A store with approvals but without its GATEHOUSE marker must not be wiped as an
    // "interrupted initialisation": refuse, keep the data.
    let ws = Workspace::new();
    let ids = populated(&ws);
    std::fs::remove_file(ws.data().join("GATEHOUSE")).unwrap();
    assert_refused(&ws, "marker is missing but the store holds records");
    assert!(ws.data().join("store").join("db").is_file());
    // Put the marker back: everything is still there.
    std::fs::write(
        ws.data().join("GATEHOUSE"),
        format!(
            "gatehouse data directory\nschema = {}\n",
            gatehouse::store::SCHEMA_VERSION
        ),
    )
    .unwrap();
    let d = ws.start();
    block_on(async {
        let api = d.api();
        for id in &ids {
            assert_eq!(api.approval(id).await["id"], id.as_str());
        }
    });
}

#[test]
fn foreign_directory_is_refused_and_left_alone() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.data()).unwrap();
    let notes = ws.data().join("notes.txt");
    std::fs::write(&notes, "my precious notes\n").unwrap();
    std::fs::create_dir_all(ws.data().join("photos")).unwrap();
    assert_refused(&ws, "not a gatehouse data directory");
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "my precious notes\n"
    );
    assert!(ws.data().join("photos").is_dir());
    assert!(!ws.data().join("GATEHOUSE").exists());
    assert!(!ws.data().join("store").exists());
    assert!(
        !ws.data().join("gatehouse.lock").exists(),
        "a refused foreign directory is left as it was found"
    );

    // A file given as the data directory is refused as such, and left as it is.
    let ws = Workspace::new();
    std::fs::write(ws.data(), "my precious notes\n").unwrap();
    assert_refused(&ws, "it is a file, not a directory");
    assert_eq!(
        std::fs::read_to_string(ws.data()).unwrap(),
        "my precious notes\n"
    );
}
