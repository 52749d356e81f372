//! The `iaso-probe` binary: everything lives in the library; this maps it to an exit code.

fn main() {
    let code = iaso_probe::cli::main();
    // Every guard and actor system is dropped by now: logs are flushed.
    std::process::exit(code);
}
