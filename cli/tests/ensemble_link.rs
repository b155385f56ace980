//! The ensemble link handshake (`verifier::ensemble_link`) over a real TCP connection on
//! 127.0.0.1, with documents from the simulated NSM and the release entry of a real log: two
//! members of the same release agree on keys and exchange records a listener on the wire sees
//! only as ciphertext; a member whose PCRs are another release's, or whose documents chain to
//! another root, is refused before any record.

use arcane_cli::demo::Stack;
use arcane_compute::attestation::SimulatedNsm;
use arcane_gateway::proven::Proven;
use arcane_verifier::ensemble_link::{
    Hello, LinkRole, LinkSecret, PeerPolicy, check_peer, document_nonce, length_prefixed,
};
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot, binding_user_data};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{now_ms, random_measurements, releases, stack};

/// One member: its NSM, the release it runs, and the model it binds.
struct Member<'a> {
    nsm: &'a SimulatedNsm,
    release: &'a Proven,
    model: [u8; 32],
}

impl Member<'_> {
    fn document(&self, nonce: &[u8; 32], key: &[u8; 32]) -> Vec<u8> {
        let user_data =
            binding_user_data(&self.model, &self.release.verified.leaf_hash.0, &[0; 32]);
        self.nsm
            .attest_at(Some(key), Some(&user_data), Some(nonce), now_ms())
            .unwrap()
    }
}

async fn read_prefixed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let len = stream.read_u32().await.unwrap() as usize;
    let mut out = vec![0; len];
    stream.read_exact(&mut out).await.unwrap();
    out
}

/// Runs the handshake between `dialer` and `listener` over TCP, each checking the other under
/// `root` against its own release; then the dialer sends `payload` in one record. Returns what
/// each side's check said and, when both passed, the bytes that crossed the wire after the
/// handshake and what the listener opened.
async fn handshake(
    dialer: Member<'_>,
    listener: Member<'_>,
    root: &NitroRoot,
    payload: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut d_stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut l_stream, _) = server.accept().await.unwrap();
    fn policy<'a>(root: &'a NitroRoot, m: &Member<'a>) -> PeerPolicy<'a> {
        PeerPolicy {
            root,
            release: &m.release.verified,
            attestation: AttestationPolicy::default(),
        }
    }

    // Hello.
    let hello = Hello {
        from_rank: 0,
        to_rank: 1,
        challenge: [1; 32],
    }
    .encode();
    d_stream.write_all(&hello).await.unwrap();
    let mut got = vec![0; hello.len()];
    l_stream.read_exact(&mut got).await.unwrap();
    let parsed = Hello::decode(&got).unwrap();
    assert_eq!((parsed.from_rank, parsed.to_rank), (0, 1));

    // Answer: the listener's document answers the hello.
    let l_secret = LinkSecret::generate().unwrap();
    let l_challenge = [2u8; 32];
    let l_doc = listener.document(
        &document_nonce(LinkRole::Listener, &got, &l_challenge),
        &l_secret.public(),
    );
    let mut answer = l_challenge.to_vec();
    answer.extend(length_prefixed(&l_doc));
    l_stream.write_all(&answer).await.unwrap();
    let mut challenge = [0u8; 32];
    d_stream.read_exact(&mut challenge).await.unwrap();
    let doc = read_prefixed(&mut d_stream).await;
    let l_key = check_peer(
        &doc,
        &document_nonce(LinkRole::Listener, &hello, &challenge),
        &policy(root, &dialer),
        now_ms(),
    )
    .map_err(|e| format!("the dialer refused: {e}"))?;

    // Finish: the dialer's document.
    let d_secret = LinkSecret::generate().unwrap();
    let d_doc = dialer.document(
        &document_nonce(LinkRole::Dialer, &hello, &challenge),
        &d_secret.public(),
    );
    let finish = length_prefixed(&d_doc);
    d_stream.write_all(&finish).await.unwrap();
    let got_doc = read_prefixed(&mut l_stream).await;
    let d_key = check_peer(
        &got_doc,
        &document_nonce(LinkRole::Dialer, &got, &l_challenge),
        &policy(root, &listener),
        now_ms(),
    )
    .map_err(|e| format!("the listener refused: {e}"))?;

    let transcript = [&hello[..], &answer, &finish].concat();
    let (mut d_send, _) = d_secret
        .derive(LinkRole::Dialer, &l_key, &transcript)
        .unwrap();
    let (_, mut l_recv) = l_secret
        .derive(LinkRole::Listener, &d_key, &transcript)
        .unwrap();
    let record = d_send.seal(payload).unwrap();
    d_stream.write_all(&record).await.unwrap();
    let mut wire = vec![0; record.len()];
    l_stream.read_exact(&mut wire).await.unwrap();
    l_recv.push(&wire);
    let opened = l_recv.next_record().unwrap().map_err(|e| e.to_string())?;
    Ok((wire, opened))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_one_release_link_and_others_are_refused_before_any_record() {
    let dir = tempfile::tempdir().unwrap();
    let stack: Stack = stack(dir.path(), false).await;
    let release = releases(&stack).await.remove(0);
    let root = NitroRoot::development(stack.nsm.root_der().to_vec());
    let model = stack.model.sha256;
    let member = || Member {
        nsm: &stack.nsm,
        release: &release,
        model,
    };
    // Activations: a run of a known float pattern, to look for on the wire.
    let activations: Vec<u8> = (0..1024u32)
        .flat_map(|i| (i as f32 * 0.125).to_le_bytes())
        .collect();
    let (wire, opened) = handshake(member(), member(), &root, &activations)
        .await
        .unwrap();
    assert_eq!(opened, activations);
    assert!(
        !wire
            .windows(16)
            .any(|w| activations.windows(16).any(|a| a == w)),
        "no 16-byte run of the activations crosses in the clear"
    );

    // Another image (other PCRs, the same root): the dialer refuses it before any record.
    let other = SimulatedNsm::new(&random_measurements(), now_ms() / 1000).unwrap();
    let other_root = NitroRoot::development(other.root_der().to_vec());
    let impostor = Member {
        nsm: &other,
        release: &release,
        model,
    };
    let e = handshake(member(), impostor, &other_root, b"x")
        .await
        .unwrap_err();
    assert!(e.contains("the dialer refused") && e.contains("PCR"), "{e}");
    // Its documents under our root do not even chain.
    let impostor = Member {
        nsm: &other,
        release: &release,
        model,
    };
    let e = handshake(impostor, member(), &root, b"x")
        .await
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
}
