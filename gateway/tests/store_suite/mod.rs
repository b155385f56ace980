//! The token store's conformance suite: every back end runs it (`store_sqlite.rs`,
//! `postgres.rs`). Where it takes several stores, they are separate pools on one database, as
//! replicas are: each decision must hold across them.
#![allow(dead_code)]

use arcane_gateway::store::{Spend, TokenStore};

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A token is fresh once per scope; the scopes (gateway, relay) are independent.
pub async fn spends_once_per_scope(store: &TokenStore) {
    let nonce = random();
    assert_eq!(
        store.spend("gateway", &nonce, 1_000, 10).await.unwrap(),
        Spend::Fresh
    );
    assert_eq!(
        store.spend("gateway", &nonce, 1_000, 11).await.unwrap(),
        Spend::Again
    );
    assert_eq!(
        store.spend("relay", &nonce, 1_000, 12).await.unwrap(),
        Spend::Fresh
    );
    // A key valid for ever is stored, not refused.
    assert_eq!(
        store
            .spend("gateway", &random(), u64::MAX, 12)
            .await
            .unwrap(),
        Spend::Fresh
    );
}

/// `rounds` tokens, each spent by `per_store` tasks on every store at once: exactly one of all
/// the attempts is fresh, every time.
pub async fn concurrent_spends_accept_one(stores: &[TokenStore], rounds: usize, per_store: usize) {
    for round in 0..rounds {
        let nonce: [u8; 32] = random();
        let mut tasks = Vec::new();
        for store in stores {
            for _ in 0..per_store {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store.spend("gateway", &nonce, 1_000, 1).await.unwrap()
                }));
            }
        }
        let mut fresh = 0;
        for task in tasks {
            if task.await.unwrap() == Spend::Fresh {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "round {round}: accepted {fresh} times");
    }
}

/// Spends of new tokens and of tokens spent before, all at once and interleaved across the
/// stores (so that each group commit holds both): exactly the new ones are fresh, each once, and
/// all of them are recorded.
pub async fn mixed_concurrent_spends_are_each_decided(stores: &[TokenStore]) {
    let old: Vec<[u8; 32]> = (0..100).map(|_| random()).collect();
    for nonce in &old {
        assert_eq!(
            stores[0].spend("relay", nonce, 1_000, 1).await.unwrap(),
            Spend::Fresh
        );
    }
    let new: Vec<[u8; 32]> = (0..100).map(|_| random()).collect();
    let mut tasks = Vec::new();
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        for (nonce, was_spent) in [(*o, true), (*n, false)] {
            let store = stores[i % stores.len()].clone();
            tasks.push(tokio::spawn(async move {
                let spend = store.spend("relay", &nonce, 1_000, 2).await.unwrap();
                (spend, was_spent)
            }));
        }
    }
    for task in tasks {
        let (spend, was_spent) = task.await.unwrap();
        let expected = if was_spent {
            Spend::Again
        } else {
            Spend::Fresh
        };
        assert_eq!(spend, expected);
    }
    for nonce in &new {
        assert_eq!(
            stores[1 % stores.len()]
                .spend("relay", nonce, 1_000, 3)
                .await
                .unwrap(),
            Spend::Again
        );
    }
}

/// The same tokens spent at two stores at once, in opposite orders (so that the two group
/// commits meet each other's rows the other way round): every spend is decided, with no error,
/// and each token is fresh exactly once. On PostgreSQL this deadlocked while a group commit
/// inserted its rows in arrival order.
pub async fn opposite_orders_at_two_stores_are_each_decided_once(stores: &[TokenStore]) {
    let (a, b) = (&stores[0], &stores[1 % stores.len()]);
    for round in 0..20 {
        let nonces: Vec<[u8; 32]> = (0..64).map(|_| random()).collect();
        let mut tasks = Vec::new();
        for (store, order) in [(a, false), (b, true)] {
            let mut these = nonces.clone();
            if order {
                these.reverse();
            }
            for nonce in these {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    (nonce, store.spend("gateway", &nonce, 1_000, 1).await)
                }));
            }
        }
        let mut fresh = std::collections::HashMap::new();
        for task in tasks {
            let (nonce, spend) = task.await.unwrap();
            let spend = spend.unwrap_or_else(|e| panic!("round {round}: a spend failed: {e}"));
            *fresh.entry(nonce).or_insert(0) += (spend == Spend::Fresh) as u32;
        }
        assert_eq!(fresh.len(), nonces.len());
        assert!(
            fresh.values().all(|&n| n == 1),
            "round {round}: a token was not fresh exactly once"
        );
    }
}

/// An account's TGT budget: `limit` reservations succeed across all stores however many race
/// for them; a refund makes exactly one more possible; another period has its own budget.
pub async fn tgt_budget_holds_under_races(stores: &[TokenStore]) {
    let account = format!("acct-{}", hex::encode(random::<4>()));
    let limit = 3;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = stores[i % stores.len()].clone();
        let account = account.clone();
        tasks.push(tokio::spawn(async move {
            store.reserve_tgt(&account, 7, limit).await.unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += u32::from(task.await.unwrap());
    }
    assert_eq!(granted, limit);
    assert!(!stores[0].reserve_tgt(&account, 7, limit).await.unwrap());
    stores[0].refund_tgt(&account, 7).await.unwrap();
    assert!(
        stores[stores.len() - 1]
            .reserve_tgt(&account, 7, limit)
            .await
            .unwrap()
    );
    assert!(!stores[0].reserve_tgt(&account, 7, limit).await.unwrap());
    assert!(stores[0].reserve_tgt(&account, 8, limit).await.unwrap());
    // No budget at all: nothing is ever reserved.
    assert!(!stores[0].reserve_tgt("other", 7, 0).await.unwrap());
}

/// A TGT's OTT allotment: batches racing across stores are granted exactly `limit` indices in
/// all (the last batch cut short, never one index more), then none; a refund frees that many.
pub async fn ott_allotment_holds_under_races(stores: &[TokenStore]) {
    let nonce: [u8; 32] = random();
    let (limit, batch) = (100u32, 7u32);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            store
                .reserve_otts(&nonce, batch, limit, 1_000)
                .await
                .unwrap()
        }));
    }
    let mut sizes = Vec::new();
    for task in tasks {
        sizes.push(task.await.unwrap());
    }
    assert_eq!(sizes.iter().sum::<u32>(), limit, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= batch), "{sizes:?}");
    // 100 = 14 whole batches and one of 2; the other 15 got nothing.
    assert_eq!(
        sizes.iter().filter(|&&n| n == batch).count(),
        14,
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().filter(|&&n| n == 2).count(), 1, "{sizes:?}");
    assert_eq!(stores[0].otts_granted(&nonce).await.unwrap(), limit);
    assert_eq!(
        stores[0]
            .reserve_otts(&nonce, 1, limit, 1_000)
            .await
            .unwrap(),
        0
    );
    stores[0].refund_otts(&nonce, 3).await.unwrap();
    assert_eq!(
        stores[stores.len() - 1]
            .reserve_otts(&nonce, batch, limit, 1_000)
            .await
            .unwrap(),
        3
    );
    // A first batch larger than the whole allotment gets the allotment.
    let other: [u8; 32] = random();
    assert_eq!(
        stores[0]
            .reserve_otts(&other, 500, limit, 1_000)
            .await
            .unwrap(),
        limit
    );
    assert_eq!(
        stores[0]
            .reserve_otts(&random(), 0, limit, 1_000)
            .await
            .unwrap(),
        0
    );
}

/// Accounts are found by their key's digest only, and a name is taken once.
pub async fn accounts(store: &TokenStore) {
    let name = format!("acct-{}", hex::encode(random::<4>()));
    let digest = hex::encode(random::<32>());
    store.add_account(&digest, &name).await.unwrap();
    assert_eq!(store.account(&digest).await.unwrap(), Some(name.clone()));
    assert_eq!(
        store.account(&hex::encode(random::<32>())).await.unwrap(),
        None
    );
    assert!(
        store
            .add_account(&hex::encode(random::<32>()), &name)
            .await
            .is_err()
    );
}

/// Pruning forgets exactly what has expired: a token whose key expired is forgotten (it is
/// refused on its key alone), one whose key is valid stays spent; old periods' budgets go.
pub async fn prune_forgets_only_the_expired(store: &TokenStore) {
    let (old, live) = (random(), random());
    store.spend("gateway", &old, 100, 50).await.unwrap();
    store.spend("gateway", &live, 10_000, 50).await.unwrap();
    let account = format!("acct-{}", hex::encode(random::<4>()));
    assert!(store.reserve_tgt(&account, 1, 1).await.unwrap());
    assert!(store.reserve_tgt(&account, 5, 1).await.unwrap());
    let allotment: [u8; 32] = random();
    store.reserve_otts(&allotment, 4, 10, 100).await.unwrap();

    let removed = store.prune(100, 5).await.unwrap();
    assert!(removed >= 3, "removed {removed}");
    assert_eq!(
        store.spend("gateway", &old, 100, 101).await.unwrap(),
        Spend::Fresh
    );
    assert_eq!(
        store.spend("gateway", &live, 10_000, 101).await.unwrap(),
        Spend::Again
    );
    assert!(
        store.reserve_tgt(&account, 1, 1).await.unwrap(),
        "period 1 forgotten"
    );
    assert!(
        !store.reserve_tgt(&account, 5, 1).await.unwrap(),
        "period 5 kept"
    );
    assert_eq!(store.otts_granted(&allotment).await.unwrap(), 0);
}

/// Everything above on `stores` (at least one).
pub async fn run_all(stores: &[TokenStore], spend_rounds: usize) {
    spends_once_per_scope(&stores[0]).await;
    concurrent_spends_accept_one(stores, spend_rounds, 4).await;
    mixed_concurrent_spends_are_each_decided(stores).await;
    opposite_orders_at_two_stores_are_each_decided_once(stores).await;
    tgt_budget_holds_under_races(stores).await;
    ott_allotment_holds_under_races(stores).await;
    accounts(&stores[0]).await;
    prune_forgets_only_the_expired(&stores[0]).await;
}
