//! `arcane`: Client SDK and CLI that verifies the log, attestation and keys before every request.
//!
//! This component is not built yet; the binary exists so the workspace has its final shape.
//! It refuses to run rather than pretend to work.

fn main() -> std::process::ExitCode {
    eprintln!(
        "arcane: not implemented yet (Client SDK and CLI that verifies the log, attestation and keys before every request.)"
    );
    std::process::ExitCode::from(2)
}
