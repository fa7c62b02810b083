// sled copies B-tree nodes on every write and hyper allocates per request; glibc's malloc
// spent ~15% of the daemon's CPU in consolidation and trimming under load. mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
