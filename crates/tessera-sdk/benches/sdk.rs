//! Benchmarks of the SDK (filled in below).
fn main() {}
