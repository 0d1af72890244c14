//! Embeds every `.avsc` under `avro/` so adding a schema file needs no code change.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "avsc") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(io::Error::other)?);
    let avro = root.join("avro");
    println!("cargo:rerun-if-changed={}", avro.display());
    let mut files = Vec::new();
    collect(&avro, &mut files)?;
    files.sort();
    let mut code =
        String::from("/// Every embedded `.avsc` file: path under `avro/` and its text.\n");
    code.push_str("pub(crate) static AVSC_FILES: &[(&str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file
            .strip_prefix(&avro)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        code.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(io::Error::other)?);
    fs::write(out.join("avsc_files.rs"), code)
}
