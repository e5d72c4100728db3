//! Generates the CRI v1 types, servers and clients from `proto/cri/api.proto`, and crius's
//! own pull progress service from `proto/crius/pull.proto`.

fn main() -> std::io::Result<()> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto/cri");
    let proto = format!("{proto_dir}/api.proto");
    let crius_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto/crius");
    let pull = format!("{crius_dir}/pull.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Pod and container configs are kept in crius's on-disk records as JSON. A
        // record written before a field existed must still load: missing fields
        // take their protobuf default.
        .message_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .enum_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        // Env values became bytes in CRI 1.37; records keep them as text.
        .field_attribute(
            ".runtime.v1.KeyValue.value",
            "#[serde(with = \"crate::env_value\")]",
        )
        // Credentials must not reach a log through `{:?}`: Debug is written by hand.
        .skip_debug([".runtime.v1.AuthConfig"])
        .compile_protos(&[proto.as_str(), pull.as_str()], &[proto_dir, crius_dir])
}
