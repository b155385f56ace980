//! # arcane-test-support
//!
//! What the integration tests of several crates share (never published, never a dependency of
//! anything but tests): starting a server binary and reading the line it prints once it listens
//! (`<who> … listening on <address>`), with the process killed when the handle is dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A spawned server process (`.0`) and the address its listening line named (`.1`); killed (and
/// reaped) when dropped.
pub struct Spawned(pub Child, pub String);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address in a listening line: what follows the last `listening on `, if the line starts
/// with `who`.
pub fn listening_address<'a>(line: &'a str, who: &str) -> Option<&'a str> {
    let line = line.trim();
    if !line.starts_with(who) {
        return None;
    }
    line.rsplit_once("listening on ")
        .map(|(_, address)| address)
}

/// Starts `command` with its stdout piped and reads its first line, which must be `who`'s
/// listening line. When it is not (the server failed to start), the process is waited for and
/// the error is `<exit code>: <standard error>` (the latter when the caller piped it).
pub fn spawn_listening(mut command: Command, who: &str) -> Result<Spawned, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {who}: {e}"))?;
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line);
    match (read, listening_address(&line, who)) {
        (Ok(_), Some(address)) => {
            let address = address.to_owned();
            Ok(Spawned(child, address))
        }
        _ => {
            let out = child
                .wait_with_output()
                .map_err(|e| format!("waiting for {who}: {e}"))?;
            Err(format!(
                "{:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// A database of its own on the PostgreSQL server that `ARCANE_TEST_POSTGRES_URL` names (a role
/// allowed to create databases), dropped by [`TestDatabase::drop`].
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl TestDatabase {
    /// Creates `arcane_test_<tag>_<random>`; `None`, said on stderr, when no server is
    /// configured (`.ci/run` always configures one).
    pub async fn create(tag: &str) -> Option<Self> {
        use sqlx::{Connection, Executor};
        let Ok(admin_url) = std::env::var("ARCANE_TEST_POSTGRES_URL") else {
            eprintln!(
                "SKIPPED PostgreSQL test {tag}: set ARCANE_TEST_POSTGRES_URL (`.ci/run` does)"
            );
            return None;
        };
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("operating system randomness");
        let name = format!("arcane_test_{tag}_{}", hex::encode(random));
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        admin.close().await.expect("close");
        let (prefix, _) = admin_url
            .rsplit_once('/')
            .expect("URL with a database name");
        let url = format!("{prefix}/{name}");
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// Drops the database (with whatever is still connected to it).
    pub async fn drop(self) {
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to PostgreSQL");
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        assert_eq!(
            listening_address(
                "arcane-gateway listening on http://127.0.0.1:5\n",
                "arcane-gateway"
            ),
            Some("http://127.0.0.1:5")
        );
        assert_eq!(
            listening_address("witness w+1+AA listening on 127.0.0.1:7", "witness"),
            Some("127.0.0.1:7")
        );
        assert_eq!(listening_address("error: no key", "witness"), None);
        assert_eq!(
            listening_address("arcane-relay listening on x", "arcane-gateway"),
            None
        );
    }

    #[test]
    fn a_server_that_fails_to_start_is_reported_with_its_output() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "echo 'bad flag' >&2; exit 2"])
            .stderr(Stdio::piped());
        let e = spawn_listening(command, "server").err().unwrap();
        assert_eq!(e, "Some(2): bad flag\n");
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'server listening on 127.0.0.1:1'; sleep 30"]);
        let spawned = spawn_listening(command, "server").unwrap();
        assert_eq!(spawned.1, "127.0.0.1:1");
        let pid = spawned.0.id();
        drop(spawned);
        // Killed and reaped: no such process any more.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
