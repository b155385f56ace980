//! `arcane-compute`: Nitro Enclave compute node: REK, attestation, mistral.rs inference, encrypted streaming.
//!
//! This component is not built yet; the binary exists so the workspace has its final shape.
//! It refuses to run rather than pretend to work.

fn main() -> std::process::ExitCode {
    eprintln!(
        "arcane-compute: not implemented yet (Nitro Enclave compute node: REK, attestation, mistral.rs inference, encrypted streaming.)"
    );
    std::process::ExitCode::from(2)
}
