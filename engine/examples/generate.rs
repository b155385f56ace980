//! Runs one chat prompt through [`MistralEngine`] a few times and prints time to first token and
//! decode speed: the engine alone, for profiling (`perf record -g`).
//!
//! `cargo run -p arcane-engine --example generate -- MODEL.gguf [ROUNDS] [TOKENS] [PROMPT]`
//! (greedy; `ARCANE_SAMPLED=1` uses the node's default sampling and prints each answer).

use std::time::Instant;

use arcane_engine::model::ModelFile;
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a GGUF path");
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds"));
    let tokens: usize = args.next().map_or(48, |a| a.parse().expect("tokens"));
    let prompt = args
        .next()
        .unwrap_or_else(|| "Write a short story about a lighthouse keeper.".into());
    let sampled = std::env::var("ARCANE_SAMPLED").as_deref() == Ok("1");
    let model = ModelFile::open(std::path::Path::new(&path)).expect("model");
    let engine = MistralEngine::load(&model, 1).await.expect("load");
    let request = ChatCompletionRequest {
        model: model.name.clone(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: prompt,
        }],
        temperature: (!sampled).then_some(0.0),
        ..Default::default()
    };
    for _ in 0..rounds {
        let started = Instant::now();
        let mut events = engine.generate(&request, tokens).expect("generate");
        let mut first = None;
        let (mut count, mut prompt) = (0, 0);
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                EngineEvent::Delta(delta) => {
                    first.get_or_insert_with(Instant::now);
                    text.push_str(&delta);
                }
                EngineEvent::Finished {
                    completion_tokens,
                    prompt_tokens,
                    ..
                } => {
                    (count, prompt) = (completion_tokens, prompt_tokens);
                    break;
                }
                EngineEvent::Failed(e) => panic!("{e}"),
            }
        }
        let first = first.expect("a token");
        if sampled || std::env::var("ARCANE_PRINT").is_ok() {
            println!("{text}");
        }
        println!(
            "ttft {:.1} ms, decode {:.1} tokens/s ({count} tokens after a {prompt}-token prompt)",
            (first - started).as_secs_f64() * 1e3,
            count.saturating_sub(1) as f64 / first.elapsed().as_secs_f64()
        );
    }
}
