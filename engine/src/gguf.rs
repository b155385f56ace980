//! GGUF model files: a strict reader of the metadata the node checks before handing a file to
//! the inference engine, and a writer of tiny llama-architecture models for tests and
//! benchmarks.
//!
//! The engine panics on some malformed or unsupported files instead of returning an error, so the
//! node reads the header itself first: magic, version, the architecture (one the engine loads
//! through GGUF), the keys that architecture needs, a tokenizer and a chat template.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use crate::error::{EngineError, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// Most metadata entries read (real models have a few dozen).
const MAX_KV: u64 = 4096;
/// Longest string read (a chat template can be a few KiB; a token a few bytes).
const MAX_STRING: u64 = 1 << 20;
/// Most array elements read (vocabularies reach a few hundred thousand).
const MAX_ARRAY: u64 = 1 << 22;

/// Architectures the inference engine loads from GGUF (`GGUFArchitecture` loaders in
/// mistral.rs 0.8).
pub const SUPPORTED_ARCHITECTURES: [&str; 6] =
    ["llama", "phi2", "phi3", "starcoder2", "qwen2", "qwen3"];

/// One metadata value, as much of it as the node needs.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// Any integer type.
    Int(i128),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Text(String),
    /// An array: its length and, for string arrays, nothing more (the node only counts them).
    Array {
        /// Element type code.
        element_type: u32,
        /// Number of elements.
        len: u64,
    },
}

/// The metadata of a GGUF file.
#[derive(Clone, Debug, Default)]
pub struct GgufMetadata {
    /// Format version.
    pub version: u32,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Key-value pairs in file order.
    pub entries: Vec<(String, MetaValue)>,
}

impl GgufMetadata {
    /// A value by key.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(MetaValue::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.text("general.architecture")
    }

    /// `general.name`, when present.
    pub fn name(&self) -> Option<&str> {
        self.text("general.name")
    }

    /// Checks that the inference engine can load this file: a supported architecture with the
    /// keys it needs, a tokenizer, and a chat template (without one every chat request fails).
    pub fn check_loadable(&self) -> Result<()> {
        let arch = self
            .architecture()
            .ok_or_else(|| model_error("no general.architecture"))?;
        if !SUPPORTED_ARCHITECTURES.contains(&arch) {
            return Err(model_error(&format!(
                "architecture {arch:?} is not one the engine loads from GGUF ({})",
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        for key in [
            "embedding_length",
            "block_count",
            "attention.head_count",
            "context_length",
        ] {
            let full = format!("{arch}.{key}");
            if !matches!(self.get(&full), Some(MetaValue::Int(v)) if *v > 0) {
                return Err(model_error(&format!("missing or zero {full}")));
            }
        }
        match self.text("tokenizer.ggml.model") {
            Some("gpt2") => {
                if !matches!(
                    self.get("tokenizer.ggml.merges"),
                    Some(MetaValue::Array {
                        element_type: 8,
                        ..
                    })
                ) {
                    return Err(model_error(
                        "a gpt2 tokenizer without tokenizer.ggml.merges",
                    ));
                }
            }
            Some("llama") | Some("replit") => {}
            Some(other) => {
                return Err(model_error(&format!(
                    "tokenizer model {other:?} is not supported"
                )));
            }
            None => return Err(model_error("no tokenizer.ggml.model")),
        }
        let Some(MetaValue::Array {
            element_type: 8,
            len: vocab,
        }) = self.get("tokenizer.ggml.tokens")
        else {
            return Err(model_error("no tokenizer.ggml.tokens"));
        };
        match self.get("tokenizer.ggml.eos_token_id") {
            Some(MetaValue::Int(eos)) if *eos >= 0 && (*eos as u64) < *vocab => {}
            _ => {
                return Err(model_error(
                    "tokenizer.ggml.eos_token_id missing or out of range",
                ));
            }
        }
        if self.text("tokenizer.chat_template").is_none() {
            return Err(model_error("no tokenizer.chat_template"));
        }
        Ok(())
    }
}

fn model_error(why: &str) -> EngineError {
    EngineError::Model(why.to_owned())
}

struct Reader<R> {
    inner: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| model_error("truncated GGUF header"))?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(model_error("GGUF string over 1 MiB"));
        }
        let mut b = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| model_error("truncated GGUF string"))?;
        String::from_utf8(b).map_err(|_| model_error("GGUF string is not UTF-8"))
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|_| model_error("truncated GGUF array"))?;
        if copied != n {
            return Err(model_error("truncated GGUF array"));
        }
        Ok(())
    }
    fn scalar(&mut self, ty: u32) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::Int(self.bytes::<1>()?[0].into()),
            1 => MetaValue::Int((self.bytes::<1>()?[0] as i8).into()),
            2 => MetaValue::Int(u16::from_le_bytes(self.bytes()?).into()),
            3 => MetaValue::Int(i16::from_le_bytes(self.bytes()?).into()),
            4 => MetaValue::Int(self.u32()?.into()),
            5 => MetaValue::Int(i32::from_le_bytes(self.bytes()?).into()),
            6 => MetaValue::Float(f32::from_le_bytes(self.bytes()?).into()),
            7 => MetaValue::Bool(self.bytes::<1>()?[0] != 0),
            8 => MetaValue::Text(self.string()?),
            10 => MetaValue::Int(self.u64()?.into()),
            11 => MetaValue::Int(i64::from_le_bytes(self.bytes()?).into()),
            12 => MetaValue::Float(f64::from_le_bytes(self.bytes()?)),
            other => return Err(model_error(&format!("unknown GGUF value type {other}"))),
        })
    }
    fn value(&mut self, ty: u32) -> Result<MetaValue> {
        if ty != 9 {
            return self.scalar(ty);
        }
        let element_type = self.u32()?;
        let len = self.u64()?;
        if len > MAX_ARRAY {
            return Err(model_error("GGUF array over 4M elements"));
        }
        let width = match element_type {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match (element_type, width) {
            (_, Some(w)) => self.skip(len * w)?,
            (8, None) => {
                for _ in 0..len {
                    let n = self.u64()?;
                    if n > MAX_STRING {
                        return Err(model_error("GGUF string over 1 MiB"));
                    }
                    self.skip(n)?;
                }
            }
            _ => return Err(model_error("nested or unknown GGUF array type")),
        }
        Ok(MetaValue::Array { element_type, len })
    }
}

/// Reads the metadata of a GGUF file (header and key-value pairs; tensors are not read).
pub fn read_metadata(path: &Path) -> Result<GgufMetadata> {
    let file = std::fs::File::open(path)
        .map_err(|e| model_error(&format!("cannot open {}: {e}", path.display())))?;
    read_metadata_from(BufReader::new(file))
}

/// [`read_metadata`] over any reader.
pub fn read_metadata_from(reader: impl Read) -> Result<GgufMetadata> {
    let mut r = Reader { inner: reader };
    if &r.bytes::<4>()? != MAGIC {
        return Err(model_error("not a GGUF file (bad magic)"));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(model_error(&format!(
            "GGUF version {version} is not supported"
        )));
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    if kv_count > MAX_KV {
        return Err(model_error("more than 4096 GGUF metadata entries"));
    }
    let mut entries = Vec::with_capacity(kv_count as usize);
    for _ in 0..kv_count {
        let key = r.string()?;
        let ty = r.u32()?;
        let value = r.value(ty)?;
        entries.push((key, value));
    }
    Ok(GgufMetadata {
        version,
        tensor_count,
        entries,
    })
}

/// Shape of a tiny llama model.
#[derive(Clone, Copy, Debug)]
pub struct TinyLlama {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (and key-value heads).
    pub heads: usize,
    /// Feed-forward size.
    pub ffn: usize,
    /// Context length.
    pub context: usize,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        TinyLlama {
            layers: 2,
            hidden: 64,
            heads: 4,
            ffn: 128,
            context: 2048,
            seed: 7,
        }
    }
}

/// The ChatML template the tiny model carries.
pub const TINY_CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// GPT-2's byte-to-character map, which byte-level BPE vocabularies are written in.
fn byte_level_char(b: u8) -> char {
    let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable {
        return char::from(b);
    }
    // The 68 other bytes map, in order, to U+0100 onwards.
    let rank = (0..b)
        .filter(|x| !((b'!'..=b'~').contains(x) || (0xA1..=0xAC).contains(x) || *x >= 0xAE))
        .count() as u32;
    char::from_u32(0x100 + rank).expect("valid code point")
}

/// The tiny models' vocabulary: the 256 bytes in GPT-2's byte-level alphabet, a few merges and
/// their tokens, then the ChatML special tokens.
pub(crate) struct TinyVocabulary {
    /// Every token, by id.
    pub tokens: Vec<String>,
    /// The merges, as `"left right"`.
    pub merges: Vec<String>,
    /// The id of `<|im_start|>`.
    pub im_start: usize,
    /// The id of `<|im_end|>`.
    pub im_end: usize,
}

impl TinyVocabulary {
    pub(crate) fn new() -> TinyVocabulary {
        let mut tokens: Vec<String> = (0..=255u8)
            .map(|b| byte_level_char(b).to_string())
            .collect();
        let space = byte_level_char(b' ');
        let merges: Vec<String> = ["t h", "e r", "i n", "a n", "o n", "r e"]
            .iter()
            .map(|m| m.to_string())
            .chain(
                ["t", "a", "i", "w", "o", "s"]
                    .iter()
                    .map(|c| format!("{space} {c}")),
            )
            .collect();
        for m in &merges {
            tokens.push(m.replace(' ', ""));
        }
        let im_start = tokens.len();
        tokens.push("<|im_start|>".into());
        let im_end = tokens.len();
        tokens.push("<|im_end|>".into());
        TinyVocabulary {
            tokens,
            merges,
            im_start,
            im_end,
        }
    }
}

/// A small deterministic generator (SplitMix64) for the weights.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }
    fn kv_u32(&mut self, key: &str, v: u32) {
        self.string(key);
        self.u32(4);
        self.u32(v);
    }
    fn kv_f32(&mut self, key: &str, v: f32) {
        self.string(key);
        self.u32(6);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn kv_str(&mut self, key: &str, v: &str) {
        self.string(key);
        self.u32(8);
        self.string(v);
    }
    fn kv_strings(&mut self, key: &str, items: &[String]) {
        self.string(key);
        self.u32(9);
        self.u32(8);
        self.u64(items.len() as u64);
        for s in items {
            self.string(s);
        }
    }
}

/// Writes a tiny llama-architecture GGUF (F32 weights from `shape.seed`, a byte-level BPE
/// vocabulary of the 256 bytes, a few merges and the ChatML special tokens, a ChatML template)
/// to `path`. The same shape gives the same bytes.
pub fn write_tiny_llama(path: &Path, shape: &TinyLlama) -> Result<()> {
    let TinyVocabulary {
        tokens,
        merges,
        im_start,
        im_end,
    } = TinyVocabulary::new();
    let vocab = tokens.len();
    let head_dim = shape.hidden / shape.heads;

    let mut w = Writer { out: Vec::new() };
    let mut tensors: Vec<(String, Vec<usize>)> =
        vec![("token_embd.weight".into(), vec![shape.hidden, vocab])];
    for l in 0..shape.layers {
        let p = format!("blk.{l}");
        tensors.push((format!("{p}.attn_norm.weight"), vec![shape.hidden]));
        for t in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            tensors.push((format!("{p}.{t}.weight"), vec![shape.hidden, shape.hidden]));
        }
        tensors.push((format!("{p}.ffn_norm.weight"), vec![shape.hidden]));
        tensors.push((
            format!("{p}.ffn_gate.weight"),
            vec![shape.hidden, shape.ffn],
        ));
        tensors.push((format!("{p}.ffn_up.weight"), vec![shape.hidden, shape.ffn]));
        tensors.push((
            format!("{p}.ffn_down.weight"),
            vec![shape.ffn, shape.hidden],
        ));
    }
    tensors.push(("output_norm.weight".into(), vec![shape.hidden]));
    tensors.push(("output.weight".into(), vec![shape.hidden, vocab]));

    w.out.extend_from_slice(MAGIC);
    w.u32(3);
    w.u64(tensors.len() as u64);
    w.u64(16);
    w.kv_str("general.architecture", "llama");
    w.kv_str("general.name", "arcane-tiny-llama");
    w.kv_u32("llama.context_length", shape.context as u32);
    w.kv_u32("llama.embedding_length", shape.hidden as u32);
    w.kv_u32("llama.block_count", shape.layers as u32);
    w.kv_u32("llama.feed_forward_length", shape.ffn as u32);
    w.kv_u32("llama.attention.head_count", shape.heads as u32);
    w.kv_u32("llama.attention.head_count_kv", shape.heads as u32);
    w.kv_u32("llama.rope.dimension_count", head_dim as u32);
    w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strings("tokenizer.ggml.tokens", &tokens);
    w.kv_strings("tokenizer.ggml.merges", &merges);
    w.kv_u32("tokenizer.ggml.bos_token_id", im_start as u32);
    w.kv_u32("tokenizer.ggml.eos_token_id", im_end as u32);
    w.kv_str("tokenizer.chat_template", TINY_CHAT_TEMPLATE);

    let mut offset = 0u64;
    for (name, dims) in &tensors {
        w.string(name);
        w.u32(dims.len() as u32);
        for d in dims {
            w.u64(*d as u64);
        }
        w.u32(0); // F32
        w.u64(offset);
        let bytes = dims.iter().product::<usize>() as u64 * 4;
        offset += bytes.div_ceil(32) * 32;
    }
    while !w.out.len().is_multiple_of(32) {
        w.out.push(0);
    }
    let mut rng = SplitMix(shape.seed);
    for (name, dims) in &tensors {
        let n: usize = dims.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let scale = if is_norm {
            0.0
        } else {
            0.5 / (dims[0] as f32).sqrt()
        };
        for _ in 0..n {
            let v = if is_norm {
                1.0
            } else {
                rng.next_f32() * scale * 2.0
            };
            w.out.extend_from_slice(&v.to_le_bytes());
        }
        while !w.out.len().is_multiple_of(32) {
            w.out.push(0);
        }
    }
    let mut file = std::fs::File::create(path)
        .map_err(|e| model_error(&format!("cannot create {}: {e}", path.display())))?;
    file.write_all(&w.out)
        .map_err(|e| model_error(&format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
