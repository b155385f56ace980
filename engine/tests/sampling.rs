//! A request's sampling fields reach mistral.rs: greedy is repeatable, a stop sequence ends the
//! answer where it would begin, the node's defaults (temperature 0.2, top-p 0.9) sample, and the
//! warm-up at boot leaves no state behind.

use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_engine::model::ModelFile;
use arcane_engine::{EngineEvent, FinishReason, InferenceEngine, MistralEngine};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

async fn answer(engine: &MistralEngine, request: &ChatCompletionRequest) -> (String, FinishReason) {
    let mut events = engine.generate(request, 40).unwrap();
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::Delta(d) => text.push_str(&d),
            EngineEvent::Finished { reason, .. } => return (text, reason),
            EngineEvent::Failed(e) => panic!("{e}"),
        }
    }
    panic!("the generation ended without finishing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_fields_reach_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlama::default()).unwrap();
    let model = ModelFile::open(&path).unwrap();
    let engine = MistralEngine::load(&model, 1).await.unwrap();
    let greedy = ChatCompletionRequest {
        model: model.name.clone(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Tell me about the sea.".into(),
        }],
        temperature: Some(0.0),
        ..Default::default()
    };
    let (text, _) = answer(&engine, &greedy).await;
    assert_eq!(
        answer(&engine, &greedy).await.0,
        text,
        "greedy is repeatable"
    );
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 8, "{text:?}");

    // A stop sequence from the middle of the greedy answer: the answer ends just before its
    // first occurrence, which is not sent.
    // (Two ASCII letters: the tiny model's other output is mostly partial UTF-8.)
    let stop = chars
        .windows(2)
        .map(|w| w.iter().collect::<String>())
        .find(|w| w.chars().all(|c| c.is_ascii_alphanumeric()) && text.find(w.as_str()) > Some(0))
        .expect("two ASCII letters after the start");
    let expected = &text[..text.find(&stop).unwrap()];
    let stopped = ChatCompletionRequest {
        stop: Some(vec![stop.clone()]),
        ..greedy.clone()
    };
    let (cut, reason) = answer(&engine, &stopped).await;
    assert_eq!(reason, FinishReason::Stop, "stop {stop:?}");
    // What the engine holds back at a stop is at most undecodable bytes (shown as U+FFFD).
    let held_back = expected
        .strip_prefix(cut.as_str())
        .unwrap_or_else(|| panic!("{cut:?} is not where {expected:?} ends (stop {stop:?})"));
    assert!(held_back.chars().all(|c| c == '\u{fffd}'), "{held_back:?}");

    // The defaults sample: over a few answers at least two differ (greedy never does).
    let sampled = ChatCompletionRequest {
        temperature: None,
        ..greedy.clone()
    };
    let mut answers = std::collections::BTreeSet::new();
    for _ in 0..4 {
        answers.insert(answer(&engine, &sampled).await.0);
    }
    assert!(answers.len() > 1, "{answers:?}");

    // A strong frequency penalty changes the greedy answer.
    let penalised = ChatCompletionRequest {
        frequency_penalty: Some(2.0),
        ..greedy
    };
    assert_ne!(answer(&engine, &penalised).await.0, text);
}

/// The warm-up runs a generation and leaves nothing behind: a warmed-up engine answers a greedy
/// request exactly as a fresh one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_generates_and_leaves_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlama::default()).unwrap();
    let model = ModelFile::open(&path).unwrap();
    let greedy = ChatCompletionRequest {
        model: model.name.clone(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Say hello in one short sentence.".into(),
        }],
        temperature: Some(0.0),
        ..Default::default()
    };
    let fresh = MistralEngine::load(&model, 1).await.unwrap();
    let (expected, _) = answer(&fresh, &greedy).await;
    drop(fresh);

    let warmed = MistralEngine::load(&model, 1).await.unwrap();
    let took = warmed.warm_up().await.unwrap();
    assert!(!took.is_zero());
    assert_eq!(answer(&warmed, &greedy).await.0, expected);
}
