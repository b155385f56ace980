//! A model directory in the Hugging Face layout (`config.json`, the tokenizer's files, safetensors
//! weights): what an ensemble serves, because mistral.rs splits only such models across processes
//! (its GGUF models have no tensor parallelism). Checked and digested like a GGUF file, never
//! fetched from anywhere.
//!
//! The digest a release names for a directory covers every file in it (`spec/compute.md` §7.6):
//!
//! ```text
//! SHA-256("arcane-aip/model-dir/v1\n" ‖ for each file, by name in byte order:
//!         name ‖ "\n" ‖ lowercase hex SHA-256 of its bytes ‖ "\n")
//! ```
//!
//! so no file can sit beside the weights and change the model's behaviour without changing the
//! digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::gguf::{SplitMix, TINY_CHAT_TEMPLATE, TinyLlama, TinyVocabulary};
use crate::model::file_sha256;

/// Files every model directory must hold.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "tokenizer_config.json"];
/// Most files a model directory may hold.
pub const MAX_FILES: usize = 64;
/// The digest's domain separator.
const DIGEST_TAG: &[u8] = b"arcane-aip/model-dir/v1\n";

/// A local model directory, checked and digested.
#[derive(Clone, Debug)]
pub struct ModelDir {
    /// Absolute path.
    pub path: PathBuf,
    /// The directory's digest (what a `release` entry names).
    pub sha256: [u8; 32],
    /// The name requests use: the directory's name.
    pub name: String,
    /// Each file's name and SHA-256, by name.
    pub files: BTreeMap<String, [u8; 32]>,
}

impl ModelDir {
    /// Opens `path`: every entry must be a plain file (no links, no subdirectories), the required
    /// files and at least one `.safetensors` must be there; computes the digest.
    pub fn open(path: &Path) -> Result<ModelDir> {
        let model_error = |what: String| EngineError::Model(format!("{}: {what}", path.display()));
        let path = std::fs::canonicalize(path).map_err(|e| model_error(e.to_string()))?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&path).map_err(|e| model_error(e.to_string()))? {
            let entry = entry.map_err(|e| model_error(e.to_string()))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| model_error(format!("{n:?} is not a UTF-8 name")))?;
            let kind = entry.file_type().map_err(|e| model_error(e.to_string()))?;
            if !kind.is_file() {
                return Err(model_error(format!(
                    "{name} is not a plain file (a model directory holds files only)"
                )));
            }
            if files.len() == MAX_FILES {
                return Err(model_error(format!("more than {MAX_FILES} files")));
            }
            let digest = file_sha256(&entry.path())?;
            files.insert(name, digest);
        }
        for required in REQUIRED_FILES {
            if !files.contains_key(required) {
                return Err(model_error(format!("no {required}")));
            }
        }
        if !files.keys().any(|name| name.ends_with(".safetensors")) {
            return Err(model_error("no .safetensors weights".into()));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model")
            .to_owned();
        Ok(ModelDir {
            sha256: dir_digest(&files),
            path,
            name,
            files,
        })
    }
}

/// The digest of a directory whose files have these SHA-256s (see the module's documentation).
pub fn dir_digest(files: &BTreeMap<String, [u8; 32]>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(DIGEST_TAG);
    for (name, digest) in files {
        hash.update(name.as_bytes());
        hash.update(b"\n");
        for byte in digest {
            hash.update(format!("{byte:02x}").as_bytes());
        }
        hash.update(b"\n");
    }
    hash.finalize().into()
}

/// Writes a tiny llama model of `shape` into the directory `dir` (created if missing) in the
/// Hugging Face layout: F32 weights from `shape.seed`, the tiny GGUF's vocabulary as a byte-level
/// BPE `tokenizer.json`, and its ChatML template. The same shape gives the same bytes.
pub fn write_tiny_llama_dir(dir: &Path, shape: &TinyLlama) -> Result<()> {
    let io = |e: std::io::Error| EngineError::Model(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let vocabulary = TinyVocabulary::new();
    let vocab = vocabulary.tokens.len();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.ffn,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.heads,
        "num_hidden_layers": shape.layers,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": shape.context,
        "vocab_size": vocab,
        "tie_word_embeddings": false,
        "bos_token_id": vocabulary.im_start,
        "eos_token_id": vocabulary.im_end,
        "torch_dtype": "float32",
    });
    let special = |id: usize, content: &str| {
        serde_json::json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true,
        })
    };
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true,
    });
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            special(vocabulary.im_start, "<|im_start|>"),
            special(vocabulary.im_end, "<|im_end|>"),
        ],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocabulary.tokens.iter().enumerate()
                .map(|(id, token)| (token.clone(), serde_json::json!(id)))
                .collect::<serde_json::Map<_, _>>(),
            "merges": vocabulary.merges,
        },
    });
    let tokenizer_config = serde_json::json!({
        "chat_template": TINY_CHAT_TEMPLATE,
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "add_bos_token": false,
        "add_eos_token": false,
    });
    for (name, value) in [
        ("config.json", &config),
        ("tokenizer.json", &tokenizer),
        ("tokenizer_config.json", &tokenizer_config),
    ] {
        let text = serde_json::to_vec_pretty(value)
            .map_err(|e| EngineError::Model(format!("{name}: {e}")))?;
        std::fs::write(dir.join(name), text).map_err(io)?;
    }

    let mut tensors: Vec<(String, Vec<usize>)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![vocab, shape.hidden],
    )];
    for l in 0..shape.layers {
        let p = format!("model.layers.{l}");
        tensors.push((format!("{p}.input_layernorm.weight"), vec![shape.hidden]));
        for t in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            tensors.push((
                format!("{p}.self_attn.{t}.weight"),
                vec![shape.hidden, shape.hidden],
            ));
        }
        tensors.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![shape.hidden],
        ));
        for t in ["gate_proj", "up_proj"] {
            tensors.push((format!("{p}.mlp.{t}.weight"), vec![shape.ffn, shape.hidden]));
        }
        tensors.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![shape.hidden, shape.ffn],
        ));
    }
    tensors.push(("model.norm.weight".into(), vec![shape.hidden]));
    tensors.push(("lm_head.weight".into(), vec![vocab, shape.hidden]));

    let mut rng = SplitMix(shape.seed);
    let mut weights = std::collections::HashMap::new();
    for (name, dims) in tensors {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            let fan_in = *dims.last().unwrap_or(&1) as f32;
            let scale = 1.0 / fan_in.sqrt();
            (0..n).map(|_| rng.next_f32() * scale).collect()
        };
        let tensor = candle_core::Tensor::from_vec(values, dims, &candle_core::Device::Cpu)
            .map_err(|e| EngineError::Model(format!("{name}: {e}")))?;
        weights.insert(name, tensor);
    }
    candle_core::safetensors::save(&weights, dir.join("model.safetensors"))
        .map_err(|e| EngineError::Model(format!("model.safetensors: {e}")))?;
    Ok(())
}
