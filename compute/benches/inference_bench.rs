//! Time to first token and decode speed through the node's sealed path (client seal → HTTP on
//! 127.0.0.1 → `arcane-compute` process → sealed stream → client open) against the same
//! mistral.rs model called directly in this process; and the node process's peak RSS.
//!
//! `cargo bench -p arcane-compute --bench inference_bench` uses the tiny generated model;
//! `ARCANE_BENCH_MODEL=/path/model.gguf` uses another (a directory of its own).
//! `ARCANE_BENCH_ROUNDS` (default 7) and `ARCANE_BENCH_TOKENS` (default 48) tune the run.
//! `ARCANE_LLAMA_CPP_PYTHON=/path/python` (a Python with `llama-cpp-python`) adds llama.cpp on the
//! same file as the reference, its rounds interleaved with the others (`bench/llama_cpp_round.py`).
//! Every path decodes greedily with the node's repetition penalty (1.1).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use arcane_compute::node::now_seconds;
use arcane_engine::model::ModelFile;
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage, ChunkContent};
use arcane_verifier::sealed::ResponseReader;

const PROMPT: &str = "Write a short story about a lighthouse keeper.";

struct Run {
    ttft: Duration,
    decode_tokens: u64,
    decode_time: Duration,
}

impl Run {
    fn tokens_per_second(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

async fn direct(engine: &MistralEngine, model: &str, max_tokens: usize) -> Run {
    let request = ChatCompletionRequest {
        model: model.into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
        }],
        max_tokens: Some(max_tokens as u32),
        temperature: Some(0.0),
        stream: Some(true),
        ..Default::default()
    };
    let started = Instant::now();
    let mut events = engine.generate(&request, max_tokens).unwrap();
    let mut first = None;
    let mut tokens = 0;
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::Delta(_) => {
                first.get_or_insert_with(Instant::now);
            }
            EngineEvent::Finished {
                completion_tokens, ..
            } => {
                tokens = completion_tokens;
                break;
            }
            EngineEvent::Failed(e) => panic!("{e}"),
        }
    }
    let end = Instant::now();
    let first = first.expect("at least one token");
    Run {
        ttft: first - started,
        decode_tokens: tokens.saturating_sub(1),
        decode_time: end - first,
    }
}

async fn through_node(
    client: &common::Client,
    rek: arcane_verifier::sealed::RekPublicKey,
    max_tokens: u32,
) -> Run {
    let started = Instant::now();
    let (body, state) = client.seal(&client.inner(PROMPT, max_tokens), rek, now_seconds());
    let mut response = client.post(body).await;
    assert_eq!(response.status(), 200);
    let mut reader = ResponseReader::new(state);
    let mut first = None;
    let mut tokens = 0;
    while let Some(bytes) = response.chunk().await.unwrap() {
        reader.push(&bytes);
        while let Some(chunk) = reader.next_chunk().unwrap() {
            match ChunkContent::parse(&chunk.content).unwrap() {
                ChunkContent::Completion(c) => {
                    if c.choices[0].delta.content.is_some() {
                        first.get_or_insert_with(Instant::now);
                    }
                    if let Some(u) = c.usage {
                        tokens = u.completion_tokens;
                    }
                }
                ChunkContent::Error(e) => panic!("{e:?}"),
            }
        }
    }
    reader.finish().unwrap();
    let end = Instant::now();
    let first = first.expect("at least one token");
    Run {
        ttft: first - started,
        decode_tokens: tokens.saturating_sub(1),
        decode_time: end - first,
    }
}

/// llama.cpp in a Python process of its own, answering one round per request.
struct LlamaCpp {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl LlamaCpp {
    fn start(python: &str, model: &std::path::Path, max_tokens: usize) -> Self {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/llama_cpp_round.py");
        let mut child = std::process::Command::new(python)
            .args([
                script,
                &model.to_string_lossy(),
                PROMPT,
                &max_tokens.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("llama.cpp's Python");
        let input = child.stdin.take().unwrap();
        let output = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        LlamaCpp {
            child,
            input,
            output,
        }
    }

    fn ask(&mut self, line: &str) -> serde_json::Value {
        use std::io::Write;
        writeln!(self.input, "{line}").unwrap();
        let answer = self.output.next().expect("an answer").unwrap();
        serde_json::from_str(&answer).unwrap()
    }

    fn round(&mut self) -> Run {
        let v = self.ask("round");
        let tokens = v["tokens"].as_u64().unwrap();
        let tps = v["tokens_per_s"].as_f64().unwrap();
        Run {
            ttft: Duration::from_secs_f64(v["ttft_ms"].as_f64().unwrap() / 1e3),
            decode_tokens: tokens.saturating_sub(1),
            decode_time: Duration::from_secs_f64(tokens.saturating_sub(1) as f64 / tps.max(1e-9)),
        }
    }
}

impl Drop for LlamaCpp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env_number("ARCANE_BENCH_ROUNDS", 7);
    let max_tokens = env_number("ARCANE_BENCH_TOKENS", 48);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut stack = common::stack().await;
        if let Ok(path) = std::env::var("ARCANE_BENCH_MODEL") {
            stack.model = ModelFile::open(std::path::Path::new(&path)).unwrap();
        }
        stack.publish_release(stack.model.sha256).await;
        let node = stack.spawn_node(
            env!("CARGO_BIN_EXE_arcane-compute"),
            &[
                "--max-tokens",
                &max_tokens.to_string(),
                "--max-concurrent",
                "1",
            ],
        );
        let client = stack.process_client(&node);
        let rek = client.verified_node(None).await.unwrap().rek;
        let engine = MistralEngine::load(&stack.model, 1).await.unwrap();
        let mut llama = std::env::var("ARCANE_LLAMA_CPP_PYTHON")
            .ok()
            .map(|python| LlamaCpp::start(&python, &stack.model.path, max_tokens));
        // Warm every path once.
        direct(&engine, &stack.model.name, max_tokens).await;
        through_node(&client, rek, max_tokens as u32).await;
        if let Some(l) = &mut llama {
            l.round();
        }
        let (mut d_ttft, mut n_ttft, mut d_tps, mut n_tps) = (vec![], vec![], vec![], vec![]);
        let (mut l_ttft, mut l_tps) = (vec![], vec![]);
        let mut tokens = 0;
        for _ in 0..rounds {
            if let Some(l) = &mut llama {
                let r = l.round();
                l_ttft.push(r.ttft.as_secs_f64() * 1e3);
                l_tps.push(r.tokens_per_second());
            }
            let d = direct(&engine, &stack.model.name, max_tokens).await;
            let n = through_node(&client, rek, max_tokens as u32).await;
            tokens = n.decode_tokens + 1;
            d_ttft.push(d.ttft.as_secs_f64() * 1e3);
            n_ttft.push(n.ttft.as_secs_f64() * 1e3);
            d_tps.push(d.tokens_per_second());
            n_tps.push(n.tokens_per_second());
        }
        let (dt, nt, ds, ns) = (median(d_ttft), median(n_ttft), median(d_tps), median(n_tps));
        println!(
            "model {} ({} tokens per answer, {rounds} rounds, medians; greedy, repetition \
             penalty 1.1)",
            stack.model.name, tokens
        );
        if let Some(l) = &mut llama {
            let (lt, ls) = (median(l_ttft), median(l_tps));
            let rss = l.ask("rss")["peak_rss_kib"].as_f64().unwrap_or(0.0);
            println!(
                "| measurement | llama.cpp | mistral.rs direct | through the node | node ÷ direct \
                 | node ÷ llama.cpp |"
            );
            println!("|---|---|---|---|---|---|");
            println!(
                "| time to first token | {lt:.1} ms | {dt:.1} ms | {nt:.1} ms | {:.3}× | {:.2}× |",
                nt / dt,
                nt / lt
            );
            println!(
                "| decode speed | {ls:.1} tokens/s | {ds:.1} tokens/s | {ns:.1} tokens/s | {:.3}× \
                 | {:.3}× |",
                ns / ds,
                ns / ls
            );
            println!(
                "| peak RSS | {:.1} MiB (Python process) | | {:.1} MiB (node process) | | |",
                rss / 1024.0,
                node.peak_rss_kib() as f64 / 1024.0
            );
            let name = &stack.model.name;
            println!(
                "summary | engine decode vs llama.cpp, {name} (mistral.rs direct) | {ds:.1} tokens/s | llama.cpp: {ls:.1} tokens/s | {:.3}× | — | — |",
                ds / ls
            );
            println!(
                "summary | engine first token vs llama.cpp, {name} (mistral.rs direct) | {dt:.1} ms | llama.cpp: {lt:.1} ms | {:.2}× | — | — |",
                dt / lt
            );
        }
        let name = &stack.model.name;
        println!(
            "summary | node alone, decode, {name} | {ns:.1} tokens/s | mistral.rs direct: {ds:.1} tokens/s | {:.3}× | — | — |",
            ns / ds
        );
        if llama.is_some() {
            return;
        }
        println!("| measurement | mistral.rs direct | through the node | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| time to first token | {dt:.2} ms | {nt:.2} ms | {:.3}× ({:+.1}%) |",
            nt / dt,
            (nt / dt - 1.0) * 100.0
        );
        println!(
            "| decode speed | {ds:.1} tokens/s | {ns:.1} tokens/s | {:.3}× |",
            ns / ds
        );
        println!(
            "| node process peak RSS | | {:.1} MiB | |",
            node.peak_rss_kib() as f64 / 1024.0
        );
    });
}
