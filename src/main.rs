//! The `iaso-probe` binary: everything lives in the library; this maps it to an exit code.

// mimalloc instead of glibc's malloc: the request path allocates small, short-lived buffers
// on two worker threads at tens of thousands of polls a second, where glibc's arenas spent
// about a quarter of the prober's CPU (perf, BENCHMARKS.md §5) and fragmented.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = iaso_probe::cli::main();
    // Every guard and actor system is dropped by now: logs are flushed.
    std::process::exit(code);
}
