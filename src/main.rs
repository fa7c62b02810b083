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
    gatehouse::cli::main()
}
