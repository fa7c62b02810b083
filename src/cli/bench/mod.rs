//! `gatehouse bench …`: measurements of a running daemon (submit) and of the console (render).

mod load;
mod scrape;
mod submit;

mod fill;
mod start;
mod waiters;

use super::Failure;

mod console;
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Action {
    /// Durable submissions per second and their latency (closed loop, one connection per
    /// client), beside the HTTP ceiling and decisions made under the same load.
    Submit {
        /// A daemon's URL; give it several times to split the load across daemons that
        /// share one database (worker k talks to daemon k mod n).
        #[arg(long, required = true)]
        connect: Vec<String>,
        /// A server that only parses the body and answers (../shared/bench/ceiling), loaded
        /// the same way first; the report gives gatehouse's rate as a share of it.
        #[arg(long)]
        ceiling: Option<String>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Environment variable holding an agent token.
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
        /// Approve this many of the submitted approvals per second while the load runs, and
        /// report the decisions' acknowledgement latency (0: none).
        #[arg(long, default_value_t = 0)]
        decide_rate: u32,
        /// Environment variable holding a reviewer token (for --decide-rate).
        #[arg(long, default_value = "GATEHOUSE_REVIEWER_TOKEN")]
        reviewer_token_env: String,
        /// Measure this many times, the ceiling and gatehouse in turn, and report the median
        /// share of the ceiling: on a shared machine one pair moves with its load.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
    },
    /// Time to render one console frame with many pending approvals (virtualised list).
    Render {
        #[arg(long, default_value_t = 100_000)]
        pending: usize,
        #[arg(long, default_value_t = 120)]
        width: u16,
        #[arg(long, default_value_t = 35)]
        height: u16,
        #[arg(long, default_value_t = 500)]
        frames: u32,
    },
    /// Bytes an idle console writes per second and how soon an arrival shows (real daemon,
    /// real console in a pseudo-terminal).
    Console(console::ConsoleBench),
    /// Submit throughput without and then with many long polls open on other approvals.
    Waiters {
        #[arg(long)]
        connect: String,
        #[arg(long, default_value_t = 10_000)]
        waiters: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Environment variable holding an agent token.
        #[arg(long, default_value = "GATEHOUSE_TOKEN")]
        token_env: String,
    },
    /// Make a new data directory holding many pending approvals (through the real runner).
    Fill {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        pending: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// Time `gatehouse serve` from exec to its first answered request, and its memory then.
    Start {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
}

pub async fn run(action: Action) -> Result<(), Failure> {
    match action {
        Action::Console(args) => console::run(args).await,
        Action::Submit {
            connect,
            ceiling,
            concurrency,
            duration,
            token_env,
            decide_rate,
            reviewer_token_env,
            rounds,
        } => {
            submit::run(submit::SubmitBench {
                connect,
                ceiling,
                concurrency,
                duration,
                token_env,
                decide_rate,
                reviewer_token_env,
                rounds,
            })
            .await
        }
        Action::Waiters {
            connect,
            waiters,
            concurrency,
            duration,
            token_env,
        } => {
            waiters::waiters(waiters::WaitersArgs {
                connect,
                waiters,
                concurrency,
                duration,
                token_env,
            })
            .await
        }
        Action::Fill {
            data,
            pending,
            concurrency,
        } => fill::fill(&data, pending, concurrency).await,
        Action::Start { data, config, runs } => start::start(&data, config.as_ref(), runs).await,
        Action::Render {
            pending,
            width,
            height,
            frames,
        } => {
            if width < 20 || height < 5 || frames == 0 || pending > 10_000_000 {
                return Err(Failure::usage(
                    "render: need width >= 20, height >= 5, frames >= 1, pending <= 10000000",
                ));
            }
            let per = crate::tui::bench_render(pending, width, height, frames);
            println!(
                "rendered {frames} frames of {width}x{height} with {pending} pending: {:.1} us per frame",
                per.as_secs_f64() * 1e6
            );
            Ok(())
        }
    }
}
