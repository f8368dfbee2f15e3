//! Compiles `proto/imkit.proto` with protox (a pure-Rust protobuf compiler),
//! so building imkit needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/imkit.proto");
    let descriptors = protox::compile(["proto/imkit.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
