// sled copies B-tree nodes on every write and hyper allocates per request; glibc's malloc
// spent ~15% of the daemon's CPU in consolidation and trimming under load. mimalloc does not.
// It is built with `no_thp` (Cargo.toml): otherwise it asks for transparent huge pages, and
// every page it purges (returns to the OS after its 1 s delay) and touches again is faulted
// back in as a whole 2 MiB page the kernel zeroes — 10% of the daemon's CPU under the submit
// load, and ~80 MB more resident memory for 100,000 pending approvals (an idle daemon: 66 MB
// resident with them, 25 MB without).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A `command` tool's guard is this binary started again (see `tools::guard`): it must not
    // parse a command line, start a runtime or touch a terminal.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == gatehouse::tools::guard::GUARD_ARG)
    {
        gatehouse::tools::guard::run(args.collect());
    }
    gatehouse::cli::main()
}
