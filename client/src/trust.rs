//! The trust configuration: what the client believes without checking (the log's key, the
//! witnesses, the publishers, the Nitro root) and where the services are.
//!
//! ```toml
//! log = "https://log.example"
//! log_key = "log.example+1a2b3c4d+AQ…"
//! gateway = "https://gateway.example"
//! relay = "https://relay.example"   # our relay (a one-time token admits each request)
//! # relays = [                         # or any RFC 9458 relays, one picked at random per request
//! #   { url = "https://relay.example/.well-known/ohttp-gateway", token = true, http3 = true },
//! #   { url = "https://ohttp.third-party.example/arcane", token = false },
//! # ]
//! # tls_roots = "ca.pem"                # certificate authorities beside the system's
//! publishers = ["operator.example+5e6f7a8b+AQ…"]
//! witnesses = ["witness.example+9c0d1e2f+BA…"]
//! witness_threshold = 1
//! max_attestation_age_secs = 600
//! # accepted_releases = ["<leaf hash, hex>"]   # default: every valid release in the log
//! # api_key_file = "api-key"                    # identity-service credential
//! # development_nitro_root = "root.pem"         # simulated NSM; never in production
//! ```
//!
//! Relative paths are relative to the file's folder. The AWS Nitro root is built in; a
//! development root is used only when the file names one, and every use says so on stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arcane_verifier::bundle::LogTrust;
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::merkle::Hash;
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot, RootKind};
use arcane_verifier::note::VerifierKey;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};

/// The file form.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// The log's base URL.
    pub log: String,
    /// The log's verifier key (`name+id+base64`).
    pub log_key: String,
    /// The gateway's base URL (keys and token issuance).
    pub gateway: String,
    /// Our relay's base URL: shorthand for a `relays` entry at
    /// `<relay>/.well-known/ohttp-gateway` that takes a token.
    #[serde(default)]
    pub relay: Option<String>,
    /// The relays every request that carries a prompt or names nodes may go through.
    #[serde(default)]
    pub relays: Vec<RelayFile>,
    /// Certificate authorities (PEM) trusted beside the system's, for the relays' TLS.
    #[serde(default)]
    pub tls_roots: Option<PathBuf>,
    /// Publisher keys whose entries are accepted.
    pub publishers: Vec<String>,
    /// Witness keys.
    #[serde(default)]
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must cosign each checkpoint.
    #[serde(default)]
    pub witness_threshold: usize,
    /// Oldest node attestation accepted, in seconds.
    #[serde(default = "default_max_age")]
    pub max_attestation_age_secs: u64,
    /// Release entries (leaf hashes, hex) accepted; empty: every valid release.
    #[serde(default)]
    pub accepted_releases: Vec<String>,
    /// The identity-service API key, in a file.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// A development (simulated NSM) root, PEM. Never set in production.
    #[serde(default)]
    pub development_nitro_root: Option<PathBuf>,
}

/// A relay in the file form.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFile {
    /// The relay resource: the URL encapsulated requests are posted to.
    pub url: String,
    /// Whether it admits a request only with a one-time token (ours); a third party's relay
    /// knows nothing of tokens.
    #[serde(default)]
    pub token: bool,
    /// Whether it forwards chunked OHTTP (`message/ohttp-chunked-req`), so that answers stream;
    /// a relay that forwards only RFC 9458's `message/ohttp-req` gets whole answers.
    #[serde(default = "yes")]
    pub chunked: bool,
    /// Whether it also answers HTTP/3 (QUIC, UDP) at the URL's host and port.
    #[serde(default)]
    pub http3: bool,
}

fn yes() -> bool {
    true
}

/// A relay the client may send through (RFC 9458 §2: it forwards the body and its media type to
/// one gateway and the answer back; it sees the client's address, never what is inside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// The relay resource encapsulated requests are posted to.
    pub url: String,
    /// Whether each request spends a one-time token here.
    pub token: bool,
    /// Whether it forwards chunked OHTTP.
    pub chunked: bool,
    /// Whether it answers HTTP/3 at the URL's host and port.
    pub http3: bool,
}

impl Relay {
    /// Our relay at `base`: it takes a token, forwards chunked requests, speaks HTTP/1.1 and
    /// HTTP/2.
    pub fn ours(base: &str) -> Relay {
        Relay {
            url: format!("{}/.well-known/ohttp-gateway", base.trim_end_matches('/')),
            token: true,
            chunked: true,
            http3: false,
        }
    }
}

impl TrustFile {
    /// Parses a trust file's text.
    pub fn parse(text: &str) -> Result<TrustFile> {
        toml::from_str(text).map_err(|e| bad("trust file", e))
    }
}

fn default_max_age() -> u64 {
    600
}

/// The checked, usable form.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The log's base URL, without a trailing slash.
    pub log_url: String,
    /// The gateway's base URL.
    pub gateway_url: String,
    /// The relays (at least one); each request picks one at random ([`Trust::pick_relay`]).
    pub relays: Vec<Relay>,
    /// Certificate authorities (PEM) trusted beside the system's.
    pub tls_roots_pem: Option<Vec<u8>>,
    /// Log key, witnesses, publishers, entry rules.
    pub log: LogTrust,
    /// The root node documents must chain to.
    pub nitro_root: NitroRoot,
    /// Freshness of node documents.
    pub attestation: AttestationPolicy,
    /// Accepted release leaf hashes; empty: all valid releases.
    pub accepted_releases: Vec<Hash>,
    /// The identity-service credential.
    pub api_key: Option<Zeroizing<String>>,
}

fn bad(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Config(format!("{what}: {e}"))
}

fn url(what: &str, text: &str) -> Result<String> {
    let trimmed = text.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(bad(what, format!("{text:?} is not an http(s) URL")));
    }
    Ok(trimmed.to_owned())
}

impl Trust {
    /// Reads and checks a trust file.
    pub fn load(path: &Path) -> Result<Trust> {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(&path.display().to_string(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Trust::from_toml(&text, base)
    }

    /// Parses a trust file's text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Trust> {
        Trust::from_file(TrustFile::parse(text)?, base)
    }

    /// Checks the file form; the files it names are read relative to `base`.
    pub fn from_file(file: TrustFile, base: &Path) -> Result<Trust> {
        Trust::from_file_reading(file, |p: &Path| {
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        })
    }

    /// Checks the file form; `read` gives the text of a file it names (where there is no file
    /// system, as in a browser, the caller holds them).
    pub fn from_file_reading(
        file: TrustFile,
        read: impl Fn(&Path) -> std::result::Result<String, String>,
    ) -> Result<Trust> {
        let key =
            |what: &str, text: &str| VerifierKey::parse(text.trim()).map_err(|e| bad(what, e));
        let log_key = key("log_key", &file.log_key)?;
        let publishers = file
            .publishers
            .iter()
            .map(|p| key("publishers", p))
            .collect::<Result<Vec<_>>>()?;
        if publishers.is_empty() {
            return Err(ClientError::Config(
                "publishers: at least one publisher key is needed".into(),
            ));
        }
        let witness_keys = file
            .witnesses
            .iter()
            .map(|w| key("witnesses", w))
            .collect::<Result<Vec<_>>>()?;
        let witnesses = if witness_keys.is_empty() && file.witness_threshold == 0 {
            WitnessPolicy::none()
        } else {
            WitnessPolicy::new(witness_keys, file.witness_threshold)
                .map_err(|e| bad("witnesses", e))?
        };
        let nitro_root = match &file.development_nitro_root {
            None => NitroRoot::aws(),
            Some(p) => development_root(p, &read)?,
        };
        let api_key = match &file.api_key_file {
            None => None,
            Some(p) => {
                let text = Zeroizing::new(read(p).map_err(|e| bad("api_key_file", e))?);
                Some(Zeroizing::new(text.trim().to_owned()))
            }
        };
        let accepted_releases = file
            .accepted_releases
            .iter()
            .map(|h| {
                hex::decode(h.trim())
                    .ok()
                    .and_then(|b| Hash::from_slice(&b).ok())
                    .ok_or_else(|| {
                        bad(
                            "accepted_releases",
                            format!("{h:?} is not a 32-byte hex leaf hash"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let tls_roots_pem = match &file.tls_roots {
            None => None,
            Some(p) => Some(read(p).map_err(|e| bad("tls_roots", e))?.into_bytes()),
        };
        Ok(Trust {
            log_url: url("log", &file.log)?,
            gateway_url: url("gateway", &file.gateway)?,
            relays: relays(&file)?,
            tls_roots_pem,
            log: LogTrust {
                log_key,
                witnesses,
                publishers,
                policy: EntryPolicy::default(),
            },
            nitro_root,
            attestation: AttestationPolicy {
                max_age_ms: Duration::from_secs(file.max_attestation_age_secs).as_millis() as u64,
                ..AttestationPolicy::default()
            },
            accepted_releases,
            api_key,
        })
    }

    /// The relay for one request: uniformly at random among those listed, so that no relay sees
    /// all of a client's requests (`random` from the caller: a fresh random number).
    /// `streaming`: only among relays that forward chunked requests (a caller that can read
    /// only streamed answers).
    pub fn pick_relay(&self, random: u32, streaming: bool) -> Result<&Relay> {
        let eligible: Vec<&Relay> = self
            .relays
            .iter()
            .filter(|r| r.chunked || !streaming)
            .collect();
        if eligible.is_empty() {
            return Err(bad(
                "relays",
                "no relay listed forwards chunked requests (`chunked = true`)",
            ));
        }
        Ok(eligible[random as usize % eligible.len()])
    }

    /// Whether node documents are checked against a development root (a simulated NSM).
    pub fn is_development(&self) -> bool {
        self.nitro_root.kind() != RootKind::Aws
    }
}

/// The relays a file lists: `relay` (ours) first, then `relays`; at least one.
fn relays(file: &TrustFile) -> Result<Vec<Relay>> {
    let mut out = Vec::new();
    if let Some(base) = &file.relay {
        out.push(Relay::ours(&url("relay", base)?));
    }
    for r in &file.relays {
        let url = url("relays", &r.url)?;
        if r.http3 && !url.starts_with("https://") {
            return Err(bad(
                "relays",
                format!("{url}: HTTP/3 needs an https:// URL"),
            ));
        }
        out.push(Relay {
            url,
            token: r.token,
            chunked: r.chunked,
            http3: r.http3,
        });
    }
    if out.is_empty() {
        return Err(bad(
            "relays",
            "at least one relay is needed (`relay` or `relays`)",
        ));
    }
    Ok(out)
}

/// The development root a trust file names: read only by a build with the `development`
/// feature (the CLI's development build and the demo); every other build refuses the file.
#[cfg(feature = "development")]
fn development_root(
    path: &Path,
    read: &impl Fn(&Path) -> std::result::Result<String, String>,
) -> Result<NitroRoot> {
    let pem = read(path).map_err(|e| bad("development_nitro_root", e))?;
    Ok(NitroRoot::development(
        arcane_verifier::nitro::pem_certificate(&pem)
            .map_err(|e| bad("development_nitro_root", e))?,
    ))
}

/// See the `development` build's version: this build cannot accept a simulated document,
/// whatever a trust file says.
#[cfg(not(feature = "development"))]
fn development_root(
    path: &Path,
    _read: &impl Fn(&Path) -> std::result::Result<String, String>,
) -> Result<NitroRoot> {
    Err(bad(
        "development_nitro_root",
        format!(
            "{}: this build accepts only the AWS Nitro root (development roots need the \
             `development` feature, which production builds leave off)",
            path.display()
        ),
    ))
}

/// A TOML basic string holding `text`.
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, seed: u8) -> String {
        arcane_verifier::note::NoteSigner::from_seed(
            name,
            arcane_verifier::note::ALG_ED25519,
            &[seed; 32],
        )
        .unwrap()
        .verifier()
        .to_text()
    }

    fn file(extra: &str) -> String {
        format!(
            "log = \"http://127.0.0.1:1/\"\nlog_key = {}\ngateway = \"http://127.0.0.1:2\"\n\
             relay = \"https://relay.example\"\npublishers = [{}]\n{extra}",
            toml_string(&key("log.example", 1)),
            toml_string(&key("operator.example", 2)),
        )
    }

    #[test]
    fn a_minimal_file_trusts_the_aws_root_and_all_valid_releases() {
        let trust = Trust::from_toml(&file(""), Path::new(".")).unwrap();
        assert!(!trust.is_development());
        assert_eq!(trust.log_url, "http://127.0.0.1:1");
        assert!(trust.accepted_releases.is_empty());
        assert!(trust.log.witnesses.is_unwitnessed());
        assert_eq!(trust.attestation.max_age_ms, 600_000);
        assert!(trust.api_key.is_none());
    }

    #[test]
    fn bad_files_are_refused_with_the_field_named() {
        for (extra, field) in [
            ("unknown = 1\n", "unknown"),
            ("witness_threshold = 1\n", "witnesses"),
            (
                &format!(
                    "witnesses = [{}]\nwitness_threshold = 2\n",
                    toml_string(&key("w", 3))
                )[..],
                "witnesses",
            ),
            ("accepted_releases = [\"abcd\"]\n", "accepted_releases"),
            (
                "development_nitro_root = \"/nonexistent/root.pem\"\n",
                "development_nitro_root",
            ),
            ("api_key_file = \"/nonexistent/key\"\n", "api_key_file"),
        ] {
            let e = Trust::from_toml(&file(extra), Path::new(".")).unwrap_err();
            assert!(e.to_string().contains(field), "{extra}: {e}");
        }
        let no_publishers = file("").replace(
            &format!(
                "publishers = [{}]",
                toml_string(&key("operator.example", 2))
            ),
            "publishers = []",
        );
        assert!(Trust::from_toml(&no_publishers, Path::new(".")).is_err());
        let not_http = file("").replace("https://relay.example", "relay.example");
        assert!(
            Trust::from_toml(&not_http, Path::new("."))
                .unwrap_err()
                .to_string()
                .contains("relay")
        );
    }

    #[test]
    fn relays_are_listed_with_what_each_needs_and_picked_among_evenly() {
        let trust = Trust::from_toml(
            &file(
                "relays = [\n  { url = \"https://ohttp.other.example/arcane/\" },\n  \
                 { url = \"https://strict.example/r\", chunked = false },\n  \
                 { url = \"https://relay.example/.well-known/ohttp-gateway\", token = true, http3 = true },\n]\n",
            ),
            Path::new("."),
        )
        .unwrap();
        let urls: Vec<&str> = trust.relays.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://relay.example/.well-known/ohttp-gateway",
                "https://ohttp.other.example/arcane",
                "https://strict.example/r",
                "https://relay.example/.well-known/ohttp-gateway",
            ]
        );
        // `relay` is ours: a token, chunked; a listed relay needs nothing unless it says so.
        assert_eq!(trust.relays[0], Relay::ours("https://relay.example"));
        assert!(!trust.relays[1].token && trust.relays[1].chunked && !trust.relays[1].http3);
        assert!(!trust.relays[2].chunked);
        assert!(trust.relays[3].token && trust.relays[3].http3);
        // Uniform over the random number: every relay is reached, each as often.
        let mut hits = [0usize; 4];
        for random in 0..400u32 {
            let picked = trust.pick_relay(random, false).unwrap();
            let i = trust
                .relays
                .iter()
                .position(|r| std::ptr::eq(r, picked))
                .unwrap();
            hits[i] += 1;
        }
        assert_eq!(hits, [100; 4]);
        // A caller that reads only streams never gets the relay that forwards whole requests.
        for random in 0..30u32 {
            assert!(trust.pick_relay(random, true).unwrap().chunked);
        }
        let only_whole = Trust::from_toml(
            &file("").replace(
                "relay = \"https://relay.example\"",
                "relays = [{ url = \"https://strict.example/r\", chunked = false }]",
            ),
            Path::new("."),
        )
        .unwrap();
        assert!(only_whole.pick_relay(7, false).is_ok());
        let e = only_whole.pick_relay(7, true).unwrap_err();
        assert!(e.to_string().contains("chunked"), "{e}");
    }

    #[test]
    fn a_file_without_a_relay_or_with_http3_over_plain_http_is_refused() {
        let none = file("").replace("relay = \"https://relay.example\"\n", "");
        let e = Trust::from_toml(&none, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("at least one relay"), "{e}");
        let plain = file("relays = [{ url = \"http://127.0.0.1:9/r\", http3 = true }]\n");
        let e = Trust::from_toml(&plain, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("HTTP/3 needs an https://"), "{e}");
        let unknown = file("relays = [{ url = \"https://r.example\", tokens = 1 }]\n");
        assert!(Trust::from_toml(&unknown, Path::new(".")).is_err());
    }

    #[test]
    #[cfg(feature = "development")]
    fn relative_paths_resolve_against_the_file_and_development_roots_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let root = rcgen_free_root();
        std::fs::write(dir.path().join("root.pem"), root).unwrap();
        std::fs::write(dir.path().join("key"), "  arcane_secret\n").unwrap();
        let trust = Trust::from_toml(
            &file("development_nitro_root = \"root.pem\"\napi_key_file = \"key\"\n"),
            dir.path(),
        )
        .unwrap();
        assert!(trust.is_development());
        assert_eq!(
            trust.api_key.as_deref().map(|k| k.as_str()),
            Some("arcane_secret")
        );
    }

    /// A PEM certificate (the AWS root's bytes stand in: only the PEM form matters here).
    #[cfg(feature = "development")]
    fn rcgen_free_root() -> String {
        arcane_verifier::nitro::certificate_pem(NitroRoot::aws().der())
    }

    #[test]
    fn toml_strings_round_trip() {
        for text in [
            "plain",
            "with \"quotes\" and \\ backslash",
            "line\nbreak\ttab\u{7f}",
            "ünïcode ✓",
        ] {
            let parsed: toml::Value =
                toml::from_str(&format!("v = {}", toml_string(text))).unwrap();
            assert_eq!(parsed["v"].as_str(), Some(text));
        }
    }
}
