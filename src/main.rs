// sled copies B-tree nodes on every write and hyper allocates per request; glibc's malloc
// spent ~15% of the daemon's CPU in consolidation and trimming under load. mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // No transparent huge pages: mimalloc asks for them on its arenas, and then any touch of
    // a 2 MB region makes all of it resident. An idle daemon held 47 MB of them, and a start
    // over 200,000 pending approvals 40 MB more than it used. (Inherited by children, such
    // as stdio MCP servers, which lose nothing by it.)
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    gatehouse::cli::main()
}
