//! Writes the StreamPipeline CustomResourceDefinition as YAML to stdout.
//!
//! `cargo run -p tributary-crds --bin crdgen > crds/generated/streampipeline.yaml`

fn main() {
    match tributary_crds::crd_yaml() {
        Ok(yaml) => print!("{yaml}"),
        Err(e) => {
            eprintln!("crdgen: cannot render the CRD: {e}");
            std::process::exit(1);
        }
    }
}
