/// musl's allocator spends a visible share of ingest CPU in malloc/free under many small,
/// short-lived allocations, so the static (musl) build uses mimalloc. On glibc the system
/// allocator stays: it keeps less resident per idle connection (14 KB against 17 KB per
/// SSE stream over HTTP/1.1, `cargo bench --bench realtime`) for an ingest rate about 4%
/// lower on the mean of four alternating `cargo bench --bench ingest` runs, which is
/// within their run-to-run spread.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    burnbox::cli::run()
}
