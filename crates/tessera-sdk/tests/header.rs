//! The CI drift check for the C headers: `include/tessera.h` must be exactly what cbindgen
//! generates from the source with `cbindgen.toml`, and `include/tessera/version.h` exactly what
//! the package version in Cargo.toml gives. Regenerate both with
//! `TESSERA_BLESS=1 cargo test -p tessera-sdk --test header`.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated_header() -> String {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

fn generated_version_header() -> String {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let minor = env!("CARGO_PKG_VERSION_MINOR");
    let patch = env!("CARGO_PKG_VERSION_PATCH");
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "/* Generated from the tessera-sdk package version by crates/tessera-sdk/tests/header.rs. Do not edit. */\n\
         #ifndef TESSERA_VERSION_H\n\
         #define TESSERA_VERSION_H\n\
         \n\
         #define TESSERA_VERSION_MAJOR {major}\n\
         #define TESSERA_VERSION_MINOR {minor}\n\
         #define TESSERA_VERSION_PATCH {patch}\n\
         #define TESSERA_VERSION_STRING \"{version}\"\n\
         /* One number for comparisons: (MAJOR << 16) | (MINOR << 8) | PATCH. */\n\
         #define TESSERA_VERSION_NUMBER ((TESSERA_VERSION_MAJOR << 16) | (TESSERA_VERSION_MINOR << 8) | TESSERA_VERSION_PATCH)\n\
         \n\
         #endif /* TESSERA_VERSION_H */\n"
    )
}

fn check(path: &Path, expected: &str) {
    if std::env::var_os("TESSERA_BLESS").is_some() {
        std::fs::write(path, expected).expect("write the regenerated header");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != expected {
        let first = committed
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(expected.lines().count()));
        panic!(
            "{} is out of date (first difference at line {}):\n  committed: {:?}\n  generated: {:?}\n\
             Regenerate with `TESSERA_BLESS=1 cargo test -p tessera-sdk --test header` and commit it.",
            path.display(),
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            expected.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn c_header_matches_the_source() {
    check(&crate_dir().join("include/tessera.h"), &generated_header());
}

#[test]
fn version_header_matches_cargo_toml() {
    let text = generated_version_header();
    assert!(text.contains(&format!("\"{}\"", env!("CARGO_PKG_VERSION"))));
    check(&crate_dir().join("include/tessera/version.h"), &text);
}
