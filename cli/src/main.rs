//! The `streamcart` binary.
fn main() {}
