/// glibc's and musl's allocators spend a visible share of ingest CPU in
/// malloc/free under many small, short-lived allocations; mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    burnbox::cli::run()
}
