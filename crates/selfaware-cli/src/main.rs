//! The `selfaware` binary: the command line of [`selfaware_cli`].

fn main() {
    std::process::exit(selfaware_cli::main_with_args(std::env::args_os()));
}
