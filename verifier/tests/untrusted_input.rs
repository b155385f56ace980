//! Every parser of untrusted bytes, fed arbitrary and mutated input: no panic, and whatever parses
//! round-trips. (The same properties run under libFuzzer in `fuzz/`.)

use arcane_verifier::checkpoint::{Checkpoint, verify_checkpoint};
use arcane_verifier::cosignature::{WitnessPolicy, cosign};
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::note::{ALG_COSIGNATURE_V1, ALG_ED25519, Note, NoteSigner, VerifierKey};
use arcane_verifier::tiles::{TileCoord, encode_entry_bundle, parse_entry_bundle, parse_hash_tile};
use proptest::prelude::*;

fn signed_checkpoint() -> (Vec<u8>, VerifierKey, WitnessPolicy) {
    let log = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[1; 32]).unwrap();
    let witness = NoteSigner::from_seed("w.example/1", ALG_COSIGNATURE_V1, &[2; 32]).unwrap();
    let mut note = Checkpoint::new("example.com/log", 77, leaf_hash(b"r"))
        .sign(&log)
        .unwrap();
    let text = note.text.clone();
    note.add_signature(cosign(&witness, &text, 1_700_000_000).unwrap());
    let policy = WitnessPolicy::new(vec![witness.verifier()], 1).unwrap();
    (note.to_text().into_bytes(), log.verifier(), policy)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn notes_and_keys_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(note) = Note::parse(&data) {
            prop_assert_eq!(note.to_text().into_bytes(), data.clone());
        }
        let text = String::from_utf8_lossy(&data);
        if let Ok(key) = VerifierKey::parse(&text) {
            prop_assert_eq!(VerifierKey::parse(&key.to_text()).unwrap(), key);
        }
        let _ = NoteSigner::parse(&text);
        if let Ok(c) = Checkpoint::parse_body(&text) {
            prop_assert_eq!(c.to_body(), text.as_ref());
        }
    }

    #[test]
    fn tile_paths_and_bundles_never_panic(path in "[tile/entrsx0-9.p]{0,40}", data in proptest::collection::vec(any::<u8>(), 0..700), width in any::<u16>()) {
        if let Ok(coord) = TileCoord::parse_path(&path) {
            prop_assert_eq!(TileCoord::parse_path(&coord.path()).unwrap(), coord);
        }
        if let Ok(entries) = parse_entry_bundle(&data, width) {
            prop_assert_eq!(encode_entry_bundle(entries).unwrap(), data.clone());
        }
        let _ = parse_hash_tile(&data, width);
    }

    #[test]
    fn bundles_and_eifs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
        if let Ok(bundle) = arcane_verifier::bundle::ProofBundle::parse(&data) {
            prop_assert_eq!(bundle.to_text().into_bytes(), data.clone());
        }
        let _ = arcane_verifier::eif::measure(&data[..]);
        let mut eif = arcane_verifier::eif::build(&[(1, &data[..data.len() / 2]), (3, &data[data.len() / 2..])]).unwrap();
        prop_assert!(arcane_verifier::eif::measure(&eif[..]).unwrap().crc_ok);
        let i = data.len() % eif.len();
        eif[i] ^= 0x55;
        let _ = arcane_verifier::eif::measure(&eif[..]);
    }

    #[test]
    fn witness_requests_and_policy_files_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(request) = arcane_verifier::witness::AddCheckpoint::parse(&data) {
            prop_assert_eq!(request.to_text().into_bytes(), data.clone());
        }
        let text = String::from_utf8_lossy(&data);
        let _ = arcane_verifier::cosignature::parse_policy_file(&text);
        let _ = arcane_verifier::cosignature::parse_policy_file(&format!("witness w {text}\nquorum w\n"));
    }

    #[test]
    fn any_single_byte_change_to_a_witnessed_checkpoint_is_caught(position in any::<usize>(), value in any::<u8>()) {
        let (bytes, log, policy) = signed_checkpoint();
        prop_assert!(verify_checkpoint(&bytes, &log, &policy).is_ok());
        let mut tampered = bytes.clone();
        let i = position % tampered.len();
        prop_assume!(tampered[i] != value);
        tampered[i] = value;
        prop_assert!(verify_checkpoint(&tampered, &log, &policy).is_err());
    }
}
