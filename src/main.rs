/// musl's allocator spends a visible share of ingest CPU in malloc/free under many small,
/// short-lived allocations, so the static (musl) build uses mimalloc. On glibc the system
/// allocator ingests as fast (`cargo bench --bench ingest`: within run-to-run noise) and
/// keeps less resident per idle connection (`cargo bench --bench realtime`), so it stays.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    burnbox::cli::run()
}
