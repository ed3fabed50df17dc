fn main() -> std::process::ExitCode {
    burnbox::cli::run()
}
