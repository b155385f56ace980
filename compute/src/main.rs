//! `arcane-compute`: the Nitro Enclave compute node.
//!
//! The node's attestation (real and simulated NSM) is built (see the library); loading the model,
//! the REK, registration and serving requests are not yet, so the binary refuses to run rather
//! than pretend to serve.

fn main() -> std::process::ExitCode {
    eprintln!("arcane-compute: serving is not implemented yet (attestation only, see the library)");
    std::process::ExitCode::from(2)
}
