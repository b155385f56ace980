//! Model directories (`arcane_engine::model_dir`): the digest covers every file by name and
//! content, and anything but plain files, or a directory missing what the engine needs, is
//! refused.

use std::collections::BTreeMap;

use arcane_engine::gguf::TinyLlama;
use arcane_engine::model_dir::{ModelDir, dir_digest, write_tiny_llama_dir};
use sha2::{Digest, Sha256};

fn tiny(dir: &std::path::Path) -> ModelDir {
    write_tiny_llama_dir(dir, &TinyLlama::default()).unwrap();
    ModelDir::open(dir).unwrap()
}

#[test]
fn the_digest_is_the_manifest_of_every_file() {
    let root = tempfile::tempdir().unwrap();
    let model = tiny(&root.path().join("m"));
    assert_eq!(
        model.files.keys().collect::<Vec<_>>(),
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    // Recomputed here from the files themselves, as spec/compute.md §7.6 writes it.
    let mut manifest = b"arcane-aip/model-dir/v1\n".to_vec();
    for name in model.files.keys() {
        let bytes = std::fs::read(model.path.join(name)).unwrap();
        manifest.extend(name.as_bytes());
        manifest.push(b'\n');
        manifest.extend(hex::encode(Sha256::digest(&bytes)).as_bytes());
        manifest.push(b'\n');
    }
    assert_eq!(model.sha256, <[u8; 32]>::from(Sha256::digest(&manifest)));
    // The same shape writes the same bytes.
    assert_eq!(tiny(&root.path().join("again")).sha256, model.sha256);
}

#[test]
fn any_change_beside_the_weights_changes_the_digest() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("m");
    let model = tiny(&dir);
    // A chat template dropped beside the weights would change the model's behaviour.
    std::fs::write(dir.join("chat_template.jinja"), "{{ messages }}").unwrap();
    let with_template = ModelDir::open(&dir).unwrap();
    assert_ne!(with_template.sha256, model.sha256);
    std::fs::remove_file(dir.join("chat_template.jinja")).unwrap();
    // One byte of the tokenizer's configuration.
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        config.replace("\"add_bos_token\": false", "\"add_bos_token\": true"),
    )
    .unwrap();
    assert_ne!(ModelDir::open(&dir).unwrap().sha256, model.sha256);
    // Renaming a file changes it too.
    let mut files: BTreeMap<String, [u8; 32]> = model.files.clone();
    let weights = files.remove("model.safetensors").unwrap();
    files.insert("model-00001.safetensors".into(), weights);
    assert_ne!(dir_digest(&files), model.sha256);
}

#[test]
fn links_subdirectories_and_missing_files_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("m");
    tiny(&dir);
    std::fs::create_dir(dir.join("extra")).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains("extra is not a plain file"), "{e}");
    std::fs::remove_dir(dir.join("extra")).unwrap();

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.join("config.json"), dir.join("link.json")).unwrap();
        let e = ModelDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains("link.json is not a plain file"), "{e}");
        std::fs::remove_file(dir.join("link.json")).unwrap();
    }

    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains("no tokenizer.json"), "{e}");
}
