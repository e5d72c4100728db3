//! Pulls one image into a store: `cargo run -p crius-image --example pull -- ROOT REF [REGISTRIES_CONF]`.

use crius_image::{ImageStore, ImageStoreConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber_init();
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(reference)) = (args.next(), args.next()) else {
        eprintln!("usage: pull ROOT REF [REGISTRIES_CONF]");
        std::process::exit(2);
    };
    let mut config = ImageStoreConfig::new(root);
    config.registries_conf = args.next().map(Into::into);
    let store = ImageStore::open(config)?;
    let start = std::time::Instant::now();
    let image = store.pull(&reference, None).await?;
    println!("{image:?} in {:?}", start.elapsed());
    Ok(())
}

fn tracing_subscriber_init() {}
