//! Generates the Trillian gRPC client and server types from `proto/` with a pure-Rust protobuf
//! compiler (protox), so no system `protoc` is needed.

fn main() {
    let protos = [
        "proto/trillian.proto",
        "proto/trillian_log_api.proto",
        "proto/trillian_admin_api.proto",
        "proto/google/rpc/status.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"]).expect("the Trillian protos compile");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
        .expect("the Trillian gRPC code generates");
}
