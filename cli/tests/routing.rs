//! The gateway routing across nodes of different capacity over 127.0.0.1 (the demo stack, tiny
//! model, simulated NSM): bursts of more concurrent clients than the nodes have places together
//! fill every node to its capacity and no further (no node is sent a request while full); the
//! requests beyond the places wait at the gateway for one, or, without a wait, are answered
//! "busy" without spending their OTT; a node killed under load is dropped and the requests
//! after it are served by the others. A node registered with two gateway replicas is routed to
//! through either.

use arcane_cli::demo::{GatewayReplica, Stack};
use arcane_client::{ChatEvent, Client, ClientConfig, ClientError, Route, Trust};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

mod common;
use common::{now_ms, stack};

fn quiet(_: &str) {}

/// A client of `stack` with a state (wallet, saved checkpoint) of its own in `state`: one TGT
/// each, as separate devices of the demo's account.
fn client(stack: &Stack, state: &std::path::Path) -> Client {
    client_of(stack, None, state)
}

/// [`client`], through `replica` (and its relay) when given.
fn client_of(stack: &Stack, replica: Option<&GatewayReplica>, state: &std::path::Path) -> Client {
    let text = std::fs::read_to_string(&stack.trust_file).unwrap();
    let mut trust = Trust::from_toml(&text, stack.trust_file.parent().unwrap()).unwrap();
    if let Some(replica) = replica {
        trust.gateway_url = replica.gateway.url();
        trust.relays = vec![arcane_client::trust::Relay::ours(&replica.relay.url())];
    }
    let mut config = ClientConfig::new(trust);
    config.state_root = state.to_path_buf();
    // Every node a candidate (the default is two): the gateway routes among what the client
    // sealed for.
    config.candidates = 3;
    Client::new(config).unwrap()
}

fn request(max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: String::new(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "tell me a long story".into(),
        }],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        stream: Some(true),
        ..Default::default()
    }
}

/// One chat, read to its end; the REK of the node that answered, or `None` when the gateway
/// answered that every candidate was full.
async fn try_chat(client: &mut Client) -> Option<String> {
    let mut answer = match client.chat(request(200), Route::Cloud).await {
        Ok(answer) => answer,
        Err(ClientError::Status {
            status: 503,
            message,
            ..
        }) if message.contains("\"busy\"") => return None,
        Err(e) => panic!("{e}"),
    };
    loop {
        match answer.next().await {
            Some(Ok(ChatEvent::Delta(_))) => {}
            Some(Ok(ChatEvent::Done(_))) => break,
            Some(Err(e)) => panic!("{e}"),
            None => panic!("the answer ended without saying why"),
        }
    }
    let receipts = arcane_client::receipts::read_all(client.state()).unwrap();
    Some(receipts.last().unwrap().rek_id.clone())
}

async fn chat(client: &mut Client) -> String {
    try_chat(client).await.expect("a node with room")
}

/// The demo stack with three nodes of capacity 1, 2 and 3, chats waiting at the gateway at most
/// `place_wait` for a place.
async fn three_nodes(
    dir: &std::path::Path,
    place_wait: std::time::Duration,
) -> (Stack, Vec<arcane_cli::demo::RunningNode>) {
    let model = dir.join("tiny.gguf");
    arcane_engine::gguf::write_tiny_llama(&model, &Default::default()).unwrap();
    let mut options = arcane_cli::demo::StackOptions::new(dir.join("stack"), model);
    options.with_node = false;
    options.place_wait = place_wait;
    let stack = Stack::start(options, &quiet).await.unwrap();
    let mut nodes = Vec::new();
    for capacity in [1, 2, 3] {
        nodes.push(
            stack
                .start_node_with_capacity(capacity, &quiet)
                .await
                .unwrap(),
        );
    }
    (stack, nodes)
}

/// Rounds of two more concurrent clients than the nodes have places in all (each with a state
/// of its own): the gateway never sends a node a request it has no place for, so no node ever
/// refuses one as busy and none is ever above its capacity. Returns the answered requests of
/// each round; the gateway's spent tokens are checked to be exactly one per answered chat (a
/// request turned away as busy found no place before its OTT would have been redeemed).
async fn bursts(
    stack: &Stack,
    nodes: &[arcane_cli::demo::RunningNode],
    dir: &std::path::Path,
    rounds: usize,
) -> (Vec<usize>, Vec<Client>) {
    let places: usize = nodes.iter().map(|n| n.node.capacity()).sum();
    let mut clients: Vec<Client> = (0..places + 2)
        .map(|i| client(stack, &dir.join(format!("client-{i}"))))
        .collect();
    let mut answered_per_round = Vec::new();
    for round in 0..rounds {
        // The gateway frees a place when it sees the node's stream end, just after the client
        // has the last frame: a round starts once every place is free again.
        let ids: Vec<[u8; 32]> = nodes.iter().map(|n| n.node.rek().id()).collect();
        while stack
            .gateway_state
            .registry
            .pick(&ids, now_ms())
            .iter()
            .any(|n| n.load() > 0)
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut tasks = Vec::new();
        for mut c in clients.drain(..) {
            tasks.push(tokio::spawn(async move {
                let answered = try_chat(&mut c).await.is_some();
                (c, answered)
            }));
        }
        let mut answered = 0;
        for task in tasks {
            let (c, ok) = task.await.unwrap();
            clients.push(c);
            answered += usize::from(ok);
        }
        assert!(answered >= places, "round {round}: {answered} answered");
        answered_per_round.push(answered);
        for n in nodes {
            assert_eq!(
                n.node.busy_refusals(),
                0,
                "round {round}: a node of capacity {} was sent a request while full",
                n.node.capacity()
            );
            assert!(n.node.peak_in_flight() <= n.node.capacity());
        }
    }
    let spent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM spent_tokens WHERE scope = 'gateway'")
            .fetch_one(stack.gateway_state.tokens.store().pool())
            .await
            .unwrap();
    let answered: usize = answered_per_round.iter().sum();
    eprintln!(
        "measured: answered per round {answered_per_round:?} of {} clients, {spent} OTTs spent at the gateway",
        places + 2
    );
    assert_eq!(spent as usize, answered);
    (answered_per_round, clients)
}

/// With the default wait every request of a burst is answered (those beyond the places wait at
/// the gateway for one); then a node killed under load is dropped and routed around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_fills_nodes_by_capacity_and_a_killed_node_is_routed_around() {
    let dir = tempfile::tempdir().unwrap();
    let (stack, mut nodes) =
        three_nodes(dir.path(), arcane_gateway::server::DEFAULT_PLACE_WAIT).await;
    let (answered, mut clients) = bursts(&stack, &nodes, dir.path(), 3).await;
    assert_eq!(answered, vec![8, 8, 8], "every request waited for a place");
    let peaks: Vec<usize> = nodes.iter().map(|n| n.node.peak_in_flight()).collect();
    eprintln!("measured: peak requests in flight per node (capacities 1, 2, 3): {peaks:?}");
    assert!(
        peaks.iter().all(|&p| p >= 1),
        "every node served: {peaks:?}"
    );

    // The largest node is killed (its server and connections end at once, as when its process
    // dies); the next requests are served by the others, and the gateway drops it.
    let killed = nodes.pop().unwrap();
    let killed_rek = hex::encode(killed.node.rek().id());
    let killed_id = killed.node.rek().id();
    drop(killed);
    let c = &mut clients[0];
    for _ in 0..4 {
        let served_by = chat(c).await;
        assert_ne!(served_by, killed_rek, "a killed node answered");
    }
    assert!(
        stack
            .gateway_state
            .registry
            .pick(&[killed_id], now_ms())
            .is_empty(),
        "the killed node is still listed"
    );
}

/// Without a wait the requests beyond the places are turned away as busy, and each of them
/// spends no OTT at the gateway (checked in [`bursts`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_wait_requests_beyond_the_places_are_turned_away_unspent() {
    let dir = tempfile::tempdir().unwrap();
    let (stack, nodes) = three_nodes(dir.path(), std::time::Duration::ZERO).await;
    let (answered, _) = bursts(&stack, &nodes, dir.path(), 3).await;
    assert!(
        answered.iter().any(|&a| a < 8),
        "some request was turned away: {answered:?}"
    );
}

/// Two gateway replicas over one set of keys and one token database, each with a relay, and a
/// node registered with both (`--gateway` twice): each replica lists it and routes its own
/// clients' requests to it. (Registered with the first only, the second lists no node and its
/// client is refused.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_registered_with_two_gateway_replicas_serves_the_clients_of_both() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), false).await;
    let replica = stack.start_gateway_replica().await.unwrap();
    let node = stack
        .start_node_registered_with(2, &[&replica], &quiet)
        .await
        .unwrap();
    let rek = hex::encode(node.node.rek().id());
    for state in [&stack.gateway_state, &replica.state] {
        assert_eq!(
            state.registry.pick(&[node.node.rek().id()], now_ms()).len(),
            1
        );
    }
    let mut first = client_of(&stack, None, &dir.path().join("first"));
    let mut second = client_of(&stack, Some(&replica), &dir.path().join("second"));
    assert_eq!(chat(&mut first).await, rek);
    assert_eq!(chat(&mut second).await, rek);
    assert_eq!(chat(&mut second).await, rek);
    assert_eq!(node.node.peak_in_flight(), 1);
}
