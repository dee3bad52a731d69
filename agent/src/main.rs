//! The `vsteer` binary.

// The agent allocates many small objects while it parses and compiles tens of thousands of
// resources; mimalloc does that markedly faster than glibc's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    match vsteer::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("vsteer: {err:#}");
            std::process::exit(1);
        }
    }
}
