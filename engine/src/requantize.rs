//! Re-quantizing a GGUF into tensor types the engine multiplies fast on a CPU.
//!
//! candle (mistral.rs's tensor library) has SIMD kernels on x86-64 for Q4_0, Q8_0 and the
//! K-quants, but none for Q4_1, Q5_0 or Q5_1: a model stored in those types runs through scalar
//! loops, several times slower (`BENCHMARKS.md` has the profile). [`requantize_for_cpu`] rewrites
//! such tensors as Q8_0, which holds every value of the 4- and 5-bit types to within Q8_0's own
//! rounding (one step in 255 of each block's range), and copies every other tensor and every
//! metadata value unchanged.
//!
//! The output is a function of the input's bytes alone (keys and tensors in a fixed order, a
//! fixed alignment, candle's scalar quantizer), so the digest a release names for the converted
//! file is reproducible from the original.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};

use crate::error::{EngineError, Result};

/// Tensor types candle multiplies only with scalar loops on a CPU.
pub const SLOW_ON_CPU: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// What the converted file holds.
pub const CPU_TYPE: GgmlDType = GgmlDType::Q8_0;

/// llama.cpp's `general.file_type` for "mostly Q8_0".
const FILE_TYPE_MOSTLY_Q8_0: u32 = 7;

/// What [`requantize_for_cpu`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requantized {
    /// Tensors rewritten as [`CPU_TYPE`].
    pub converted: usize,
    /// Tensors copied as they were.
    pub kept: usize,
}

fn error(what: &str, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Model(format!("{what} {}: {e}", path.display()))
}

/// Writes `src` to `dst` with every tensor of a type in [`SLOW_ON_CPU`] re-quantized to
/// [`CPU_TYPE`]. The file appears at `dst` whole or not at all (written beside it, synced,
/// then renamed).
pub fn requantize_for_cpu(src: &Path, dst: &Path) -> Result<Requantized> {
    // candle's reader trusts the counts and lengths in a header; the strict reader, with its
    // bounds, sees the header first (as it does before every load).
    crate::gguf::read_metadata(src)?;
    let mut reader = BufReader::new(File::open(src).map_err(|e| error("cannot open", src, e))?);
    let content = Content::read(&mut reader).map_err(|e| error("cannot read", src, e))?;

    // Tensors in the order their data lies in the file, each converted or kept.
    let mut infos: Vec<_> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(name, info)| (info.offset, name.as_str()));
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(infos.len());
    let mut done = Requantized {
        converted: 0,
        kept: 0,
    };
    for (name, info) in infos {
        let tensor = content
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(|e| error(&format!("cannot read tensor {name} of"), src, e))?;
        let tensor = if SLOW_ON_CPU.contains(&info.ggml_dtype) {
            done.converted += 1;
            let values = tensor
                .dequantize(&Device::Cpu)
                .map_err(|e| error(&format!("cannot dequantize {name} of"), src, e))?;
            QTensor::quantize(&values, CPU_TYPE)
                .map_err(|e| error(&format!("cannot quantize {name} of"), src, e))?
        } else {
            done.kept += 1;
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }

    // Metadata sorted by key. The writer aligns data to 32 bytes, GGUF's default, so an
    // alignment the source declared is dropped rather than left to contradict the layout.
    let file_type = Value::U32(FILE_TYPE_MOSTLY_Q8_0);
    let mut metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .filter(|(key, _)| key.as_str() != "general.alignment")
        .map(|(key, value)| {
            if key == "general.file_type" && done.converted > 0 {
                (key.as_str(), &file_type)
            } else {
                (key.as_str(), value)
            }
        })
        .collect();
    metadata.sort_by_key(|(key, _)| *key);

    let part = PathBuf::from(format!("{}.part", dst.display()));
    let written = (|| -> Result<()> {
        let file = File::create(&part).map_err(|e| error("cannot create", &part, e))?;
        let mut out = BufWriter::new(file);
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        candle_core::quantized::gguf_file::write(&mut out, &metadata, &refs)
            .map_err(|e| error("cannot write", &part, e))?;
        out.flush().map_err(|e| error("cannot write", &part, e))?;
        let file = out
            .into_inner()
            .map_err(|e| error("cannot write", &part, e.error()))?;
        file.sync_all()
            .map_err(|e| error("cannot sync", &part, e))?;
        std::fs::rename(&part, dst).map_err(|e| error("cannot rename into", dst, e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    written.map(|()| done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF with one tensor of each of `types` (64 × 64 values from a fixed ramp), and two
    /// metadata keys.
    fn write_model(path: &Path, types: &[GgmlDType]) {
        let values: Vec<f32> = (0..64 * 64)
            .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
            .collect();
        let t = candle_core::Tensor::from_vec(values, (64, 64), &Device::Cpu).unwrap();
        let tensors: Vec<(String, QTensor)> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| (format!("t{i}.weight"), QTensor::quantize(&t, *ty).unwrap()))
            .collect();
        let name = Value::String("test".into());
        let file_type = Value::U32(3);
        let mut out = File::create(path).unwrap();
        candle_core::quantized::gguf_file::write(
            &mut out,
            &[("general.name", &name), ("general.file_type", &file_type)],
            &tensors
                .iter()
                .map(|(n, t)| (n.as_str(), t))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    }

    fn read(path: &Path) -> (Content, BufReader<File>) {
        let mut reader = BufReader::new(File::open(path).unwrap());
        (Content::read(&mut reader).unwrap(), reader)
    }

    #[test]
    fn slow_types_become_q8_0_and_the_rest_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("in.gguf"), dir.path().join("out.gguf"));
        let types = [
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q4_0,
            GgmlDType::F32,
        ];
        write_model(&src, &types);
        let done = requantize_for_cpu(&src, &dst).unwrap();
        assert_eq!(
            done,
            Requantized {
                converted: 3,
                kept: 2
            }
        );
        let (before, mut before_reader) = read(&src);
        let (after, mut after_reader) = read(&dst);
        assert_eq!(after.metadata["general.name"].to_string().unwrap(), "test");
        assert_eq!(after.metadata["general.file_type"].to_u32().unwrap(), 7);
        for (i, ty) in types.iter().enumerate() {
            let name = format!("t{i}.weight");
            let old = before
                .tensor(&mut before_reader, &name, &Device::Cpu)
                .unwrap();
            let new = after
                .tensor(&mut after_reader, &name, &Device::Cpu)
                .unwrap();
            let expected = if SLOW_ON_CPU.contains(ty) {
                CPU_TYPE
            } else {
                *ty
            };
            assert_eq!(new.dtype(), expected, "{name}");
            assert_eq!(new.shape(), old.shape());
            let old = old.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let new = new.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let (old, new) = (old.to_vec1::<f32>().unwrap(), new.to_vec1::<f32>().unwrap());
            // Q8_0 rounds to half a step, a 254th of each 32-value block's largest magnitude
            // (here under 1), its scale stored as f16 (a 2048th off at most).
            let worst = old
                .iter()
                .zip(&new)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            if expected == *ty {
                assert_eq!(worst, 0.0, "{name} copied exactly");
            } else {
                assert!(worst <= 1.0 / 254.0 + 1.0 / 2048.0, "{name}: {worst}");
            }
        }
    }

    #[test]
    fn the_output_is_a_function_of_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.gguf");
        write_model(&src, &[GgmlDType::Q4_1, GgmlDType::F32, GgmlDType::Q5_1]);
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        requantize_for_cpu(&src, &a).unwrap();
        requantize_for_cpu(&src, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        // And converting again changes nothing further but the copy.
        let c = dir.path().join("c.gguf");
        let again = requantize_for_cpu(&a, &c).unwrap();
        assert_eq!(again.converted, 0);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    }

    #[test]
    fn a_file_that_is_not_gguf_is_refused_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.gguf");
        std::fs::write(&src, b"not a model").unwrap();
        let dst = dir.path().join("out.gguf");
        let e = requantize_for_cpu(&src, &dst).unwrap_err();
        assert!(matches!(e, EngineError::Model(_)), "{e}");
        assert!(!dst.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
