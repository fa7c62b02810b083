use super::*;
use crate::policy::PolicySet;
use crate::store::Store;
use serde_json::json;

fn args(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Runner + store cost per durable submission, without HTTP:
/// `cargo test --release --lib runner::tests::submit_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn submit_cost() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (h, _task) = start(
            Store::open(dir.path()).unwrap(),
            PolicySet::empty(),
            RunnerConfig::default(),
        )
        .unwrap();
        let n_tasks = 64;
        let per = 2000;
        let t = std::time::Instant::now();
        let mut js = Vec::new();
        for w in 0..n_tasks {
            let h = h.clone();
            js.push(tokio::spawn(async move {
                for i in 0..per {
                    h.submit(
                        "bot",
                        SubmitRequest {
                            tool: "bench_refund".into(),
                            arguments: args(json!({"worker": w, "n": i, "amount": 75.5})),
                            reasoning: Some("load test".into()),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for j in js {
            j.await.unwrap();
        }
        let el = t.elapsed().as_secs_f64();
        let n = (n_tasks * per) as f64;
        println!(
            "runner: {:.0} durable submissions/s ({:.1} us each)",
            n / el,
            el * 1e6 / n
        );
    });
}
