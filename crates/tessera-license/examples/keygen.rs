//! Generates an ISV signing key pair: `<dir>/<name>.pkcs8.pem` (private, keep it secret) and
//! `<dir>/<name>.spki.pem` (public, ships with the product), and prints the key id.
//!
//! `cargo run -p tessera-license --features issuer --example keygen -- <dir> <name> [bits]`

use std::path::PathBuf;

use tessera_license::{DEFAULT_RSA_BITS, SigningKey};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(name)) = (args.next(), args.next()) else {
        return Err("usage: keygen <dir> <name> [bits]".into());
    };
    let bits = match args.next() {
        Some(b) => b.parse()?,
        None => DEFAULT_RSA_BITS,
    };
    let key = SigningKey::generate_with_bits(bits)?;
    let dir = PathBuf::from(dir);
    std::fs::write(
        dir.join(format!("{name}.pkcs8.pem")),
        key.to_pkcs8_pem()?.as_bytes(),
    )?;
    std::fs::write(
        dir.join(format!("{name}.spki.pem")),
        key.public_key().to_spki_pem()?,
    )?;
    println!("{} {}", key.key_id(), key.bits());
    Ok(())
}
