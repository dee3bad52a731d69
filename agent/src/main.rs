fn main() {
    match vsteer::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("vsteer: {err:#}");
            std::process::exit(1);
        }
    }
}
