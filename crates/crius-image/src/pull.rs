//! Pulling from registries: endpoints (mirrors first), manifests and indexes,
//! platform choice, config, and layers streamed straight into the unpacker.
//!
//! The registry protocol (auth, bearer tokens, URLs) is oci-client's. What is
//! ours: which endpoint to ask, which manifest to use, verifying every blob,
//! deduplicating layers and recording the result.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

use crate::authfile::AuthFile;
use crate::index::ImageRecord;
use crate::layers::{chain_ids, digest_hex, sha256_digest, LayerMeta};
use crate::progress::{LayerCounter, LayerState, ProgressReporter, PullProgress};
use crate::reference::{canonical_registry, valid_digest, ImageName};
use crate::registries::Endpoint;
use crate::store::Inner;
use crate::unpack::{disk_usage, unpack_layer};
use crate::{Credentials, Error, Image};

/// Media types of manifests, indexes, configs and layers crius reads or writes.
/// How often a running pull logs where it stands; a pull shorter than this logs nothing
/// but its end.
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const MT_DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

const ACCEPTED_MANIFESTS: &[&str] = &[
    MT_OCI_INDEX,
    MT_DOCKER_LIST,
    MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
];

/// Layer compression, from the media type and confirmed by magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawIndexEntry>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    urls: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndexEntry {
    media_type: Option<String>,
    digest: String,
    platform: Option<RawPlatform>,
}

#[derive(Clone, Debug, Deserialize)]
struct RawPlatform {
    architecture: String,
    os: String,
    variant: Option<String>,
}

/// The platform images are chosen for: linux and this machine's architecture.
pub fn host_platform() -> (&'static str, &'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("linux", "amd64", None),
        "aarch64" => ("linux", "arm64", Some("v8")),
        "x86" => ("linux", "386", None),
        "arm" => ("linux", "arm", Some("v7")),
        "powerpc64" => ("linux", "ppc64le", None),
        "s390x" => ("linux", "s390x", None),
        "riscv64" => ("linux", "riscv64", None),
        other => ("linux", other, None),
    }
}

/// Picks the index entry for the host platform: same os and architecture, the
/// host's variant (or no variant) preferred.
fn choose_platform(entries: &[RawIndexEntry]) -> Option<&RawIndexEntry> {
    let (os, arch, variant) = host_platform();
    let mut best: Option<(&RawIndexEntry, u8)> = None;
    for e in entries {
        let Some(p) = &e.platform else { continue };
        if p.os != os || p.architecture != arch {
            continue;
        }
        let score = match (&p.variant, variant) {
            (Some(v), Some(want)) if v == want => 2,
            (None, _) => 1,
            (Some(_), None) => 0,
            (Some(_), Some(_)) => continue,
        };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((e, score));
        }
    }
    best.map(|(e, _)| e)
}

/// Turns CRI or config credentials into what oci-client sends.
pub fn registry_auth(creds: Option<&Credentials>, registry: &str) -> Result<RegistryAuth, Error> {
    let Some(c) = creds else {
        return Ok(RegistryAuth::Anonymous);
    };
    if !c.registry_token.is_empty() {
        return Ok(RegistryAuth::Bearer(c.registry_token.clone()));
    }
    if !c.username.is_empty() || !c.password.is_empty() {
        return Ok(RegistryAuth::Basic(c.username.clone(), c.password.clone()));
    }
    if !c.auth.is_empty() {
        let bad = |reason: &str| Error::InvalidCredentials {
            registry: registry.to_string(),
            reason: reason.to_string(),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(c.auth.trim())
            .map_err(|_| bad("auth is not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("auth is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("auth is not base64 of user:password"))?;
        return Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()));
    }
    if !c.identity_token.is_empty() {
        // An identity token is a refresh token; token services that accept it
        // take it as the password with the "<token>" user (as docker sends it).
        return Ok(RegistryAuth::Basic(
            "<token>".to_string(),
            c.identity_token.clone(),
        ));
    }
    Ok(RegistryAuth::Anonymous)
}

/// The whole error chain as one line (reqwest hides causes in `source`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Maps an oci-client error to ours, naming the image and the endpoint.
fn map_err(e: OciDistributionError, image: &str, registry: &str) -> Error {
    let image = image.to_string();
    let registry = registry.to_string();
    match e {
        OciDistributionError::UnauthorizedError { url } => Error::Unauthorized {
            image,
            registry,
            reason: format!("401 Unauthorized from {url}"),
        },
        OciDistributionError::AuthenticationFailure(reason) => Error::Unauthorized {
            image,
            registry,
            reason: format!("token request refused: {}", reason.trim()),
        },
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let reason = format!(
                "{url}: {}",
                envelope
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                Error::ImageNotFound {
                    image,
                    registry: Some(registry),
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Error::Unauthorized {
                    image,
                    registry,
                    reason,
                }
            } else {
                Error::Registry {
                    image,
                    registry,
                    reason,
                }
            }
        }
        OciDistributionError::ServerError { code, url, message } => match code {
            404 => Error::ImageNotFound {
                image,
                registry: Some(registry),
            },
            401 | 403 => Error::Unauthorized {
                image,
                registry,
                reason: format!("{code} from {url}"),
            },
            _ => Error::Registry {
                image,
                registry,
                reason: format!("HTTP {code} from {url}: {}", message.trim()),
            },
        },
        OciDistributionError::ImageManifestNotFoundError(_) => Error::ImageNotFound {
            image,
            registry: Some(registry),
        },
        OciDistributionError::RequestError(ref re) if re.is_connect() || re.is_timeout() => {
            Error::RegistryUnreachable {
                image,
                registry,
                reason: chain(&e),
            }
        }
        other => Error::Registry {
            image,
            registry,
            reason: chain(&other),
        },
    }
}

fn to_oci_reference(name: &ImageName) -> Reference {
    match (&name.digest, &name.tag) {
        (Some(d), _) => {
            Reference::with_digest(name.registry.clone(), name.repository.clone(), d.clone())
        }
        (None, Some(t)) => {
            Reference::with_tag(name.registry.clone(), name.repository.clone(), t.clone())
        }
        (None, None) => Reference::with_tag(
            name.registry.clone(),
            name.repository.clone(),
            "latest".to_string(),
        ),
    }
}

/// How far one endpoint got, to pick the error worth reporting.
fn error_rank(e: &Error) -> u8 {
    match e {
        Error::Unauthorized { .. } => 4,
        Error::ImageNotFound { .. } => 3,
        Error::RegistryUnreachable { .. } => 1,
        _ => 2,
    }
}

/// A manifest chosen at one endpoint, ready to fetch blobs from there.
struct Resolved {
    client: Client,
    auth: RegistryAuth,
    endpoint: Endpoint,
    /// Digest of what the tag pointed to (an index or the manifest).
    top_digest: String,
    manifest_digest: String,
    manifest_raw: Bytes,
    index_raw: Option<Bytes>,
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

/// Bytes of one blob flowing from the download task to the unpacker thread.
enum Chunk {
    Data(Bytes),
    /// The download stopped with this error.
    Failed(String),
    /// All bytes were sent.
    End,
}

/// `Read` over the chunks of a download, hashing what passes through.
struct BlobReader {
    rx: mpsc::Receiver<Chunk>,
    cur: Bytes,
    hasher: Sha256,
    received: u64,
    state: BlobState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BlobState {
    Open,
    Ended,
    Failed(String),
}

impl BlobReader {
    fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        BlobReader {
            rx,
            cur: Bytes::new(),
            hasher: Sha256::new(),
            received: 0,
            state: BlobState::Open,
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        match self.state {
            BlobState::Ended => return Ok(false),
            BlobState::Failed(ref m) => return Err(io::Error::other(m.clone())),
            BlobState::Open => {}
        }
        match self.rx.blocking_recv() {
            Some(Chunk::Data(b)) => {
                self.hasher.update(&b);
                self.received += b.len() as u64;
                self.cur = b;
                Ok(true)
            }
            Some(Chunk::End) => {
                self.state = BlobState::Ended;
                Ok(false)
            }
            Some(Chunk::Failed(m)) => {
                self.state = BlobState::Failed(m.clone());
                Err(io::Error::other(m))
            }
            None => {
                let m = "download cancelled".to_string();
                self.state = BlobState::Failed(m.clone());
                Err(io::Error::other(m))
            }
        }
    }

    /// Reads (and hashes) whatever the unpacker left, to the end of the blob.
    fn drain(&mut self) {
        self.cur = Bytes::new();
        while let Ok(true) = self.next_chunk() {
            self.cur = Bytes::new();
        }
    }

    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// `Read` that hashes what it passes on (the uncompressed tar: the diff id).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Everything the unpacker thread needs to know about one layer.
struct LayerJob {
    image: String,
    chain_id: String,
    parent: Option<String>,
    diff_id: String,
    digest: String,
    media_type: String,
    size: u64,
    compression: Compression,
}

/// Decompresses, hashes and unpacks a layer from `blob`, verifying both
/// digests, then commits it. Runs on a blocking thread.
fn unpack_blob(inner: &Inner, job: &LayerJob, mut blob: BlobReader) -> Result<(), Error> {
    let start = Instant::now();
    let temp = inner.layers.begin(&job.chain_id)?;
    let unpack_result = {
        let mut buffered = BufReader::with_capacity(256 * 1024, &mut blob);
        let magic = buffered.fill_buf().map(|b| b.to_vec()).unwrap_or_default();
        let compression = if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if magic.len() >= 4 {
            Compression::None
        } else {
            job.compression
        };
        let decompressed: Result<Box<dyn Read + '_>, io::Error> = match compression {
            Compression::None => Ok(Box::new(buffered)),
            Compression::Gzip => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered))),
            Compression::Zstd => zstd::stream::read::Decoder::with_buffer(buffered)
                .map(|d| Box::new(d) as Box<dyn Read>),
        };
        match decompressed {
            Err(e) => Err(Error::InvalidLayer {
                layer: job.digest.clone(),
                reason: e.to_string(),
            }),
            Ok(reader) => {
                let mut hashing = HashingReader {
                    inner: reader,
                    hasher: Sha256::new(),
                };
                let r = unpack_layer(
                    &mut hashing,
                    &temp.diff(),
                    &format!("{} of image {}", job.digest, job.image),
                    &inner.config.limits.layer,
                );
                // the tar may end before the stream does (padding): hash the rest
                let rest = r.and_then(|stats| {
                    io::copy(&mut hashing, &mut io::sink())
                        .map(|_| stats)
                        .map_err(|e| Error::InvalidLayer {
                            layer: job.digest.clone(),
                            reason: e.to_string(),
                        })
                });
                rest.map(|_| format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
            }
        }
    };
    blob.drain();
    let actual = blob.digest();
    let complete = blob.state == BlobState::Ended || blob.received == job.size;
    if complete && actual != job.digest {
        return Err(Error::LayerDigestMismatch {
            image: job.image.clone(),
            layer: job.digest.clone(),
            expected: job.digest.clone(),
            actual,
        });
    }
    if let BlobState::Failed(m) = &blob.state {
        return Err(Error::Registry {
            image: job.image.clone(),
            registry: String::new(),
            reason: format!("download of layer {} failed: {m}", job.digest),
        });
    }
    let diff_id = unpack_result?;
    if diff_id != job.diff_id {
        return Err(Error::LayerDigestMismatch {
            image: job.image.clone(),
            layer: job.digest.clone(),
            expected: job.diff_id.clone(),
            actual: diff_id,
        });
    }
    let (usage_bytes, usage_inodes) =
        disk_usage(&temp.diff()).map_err(|e| Error::io(temp.diff(), e))?;
    let meta = LayerMeta {
        chain_id: job.chain_id.clone(),
        diff_id: job.diff_id.clone(),
        parent: job.parent.clone(),
        digest: job.digest.clone(),
        media_type: job.media_type.clone(),
        size: job.size,
        usage_bytes,
        usage_inodes,
    };
    crius_fault::point!("pull.layer_unpacked");
    inner.layers.commit(temp, &meta)?;
    crius_fault::point!("pull.layer_committed");
    debug!(
        layer = %job.digest,
        chain_id = %job.chain_id,
        bytes = job.size,
        elapsed = ?start.elapsed(),
        "layer unpacked"
    );
    Ok(())
}

/// An `AsyncWrite` into memory that refuses to grow past `limit` bytes, so a
/// blob is bounded while it arrives.
struct BoundedSink {
    buf: Vec<u8>,
    limit: u64,
    over: bool,
}

impl BoundedSink {
    fn new(limit: u64) -> Self {
        BoundedSink {
            buf: Vec::new(),
            limit,
            over: false,
        }
    }
}

impl tokio::io::AsyncWrite for BoundedSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        if (self.buf.len() + data.len()) as u64 > self.limit {
            self.over = true;
            return std::task::Poll::Ready(Err(io::Error::other("size bound passed")));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Inner {
    /// GETs a manifest or index, counting its bytes as they arrive against
    /// `max_manifest_size` (oci-client reads whole bodies into memory). The
    /// credentials are oci-client's: it answers the registry's challenge and
    /// keeps the token for the blob requests that follow.
    async fn fetch_manifest(
        &self,
        client: &Client,
        ep: &Endpoint,
        oref: &Reference,
        auth: &RegistryAuth,
        plain_http: bool,
        image: &str,
    ) -> Result<Bytes, Error> {
        let registry = &ep.name.registry;
        let token = client
            .auth(oref, auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| map_err(e, image, registry))?;
        let http = self.manifest_http[usize::from(ep.insecure)].get_or_init(|| {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(ep.insecure)
                .connect_timeout(std::time::Duration::from_secs(10))
                .read_timeout(std::time::Duration::from_secs(120))
                .build()
                .unwrap_or_default()
        });
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            if plain_http { "http" } else { "https" },
            oref.resolve_registry(),
            oref.repository(),
            oref.digest().or(oref.tag()).unwrap_or("latest"),
        );
        let mut req = http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPTED_MANIFESTS.join(", "));
        match (token, auth) {
            (Some(t), _) => req = req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
            (None, _) => {}
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| map_err(e.into(), image, registry))?;
        let limit = self.config.limits.max_manifest_size;
        let over = |n: u64| Error::LimitExceeded {
            what: format!("image {image}"),
            found: format!("manifest {url} of more than {n} bytes"),
            key: "max_manifest_size",
            limit,
        };
        let status = resp.status();
        if resp.content_length().is_some_and(|n| n > limit) && status.is_success() {
            return Err(over(limit));
        }
        let mut body = Vec::new();
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| map_err(e.into(), image, registry))?;
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > limit {
                if status.is_success() {
                    return Err(over(limit));
                }
                break; // an error page: its start says enough
            }
            body.extend_from_slice(&chunk);
        }
        if status == reqwest::StatusCode::OK {
            return Ok(Bytes::from(body));
        }
        let e = match status {
            reqwest::StatusCode::UNAUTHORIZED => OciDistributionError::UnauthorizedError { url },
            s if s.is_client_error() => {
                match serde_json::from_slice::<oci_client::errors::OciEnvelope>(&body) {
                    Ok(envelope) => OciDistributionError::RegistryError { envelope, url },
                    Err(_) => OciDistributionError::ServerError {
                        code: s.as_u16(),
                        url,
                        message: String::from_utf8_lossy(&body).into_owned(),
                    },
                }
            }
            s => OciDistributionError::ServerError {
                code: s.as_u16(),
                url,
                message: String::from_utf8_lossy(&body).into_owned(),
            },
        };
        Err(map_err(e, image, registry))
    }
}

impl Inner {
    /// oci-client for one endpoint and credential set; plain HTTP only for
    /// insecure hosts. Clients are kept (connection pools, bearer tokens) and
    /// dropped when registries.conf is reloaded.
    fn client(&self, endpoint: &Endpoint, auth: &RegistryAuth, plain_http: bool) -> Client {
        let host = endpoint.name.registry.clone();
        let auth_key = match auth {
            RegistryAuth::Anonymous => "anonymous".to_string(),
            RegistryAuth::Basic(u, p) => sha256_digest(format!("basic\0{u}\0{p}").as_bytes()),
            RegistryAuth::Bearer(t) => sha256_digest(format!("bearer\0{t}").as_bytes()),
        };
        let key = format!("{host}|{}|{plain_http}|{auth_key}", endpoint.insecure);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // containers-registries.conf: insecure allows HTTP and untrusted certificates
            accept_invalid_certificates: endpoint.insecure,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            platform_resolver: None,
            max_concurrent_download: self.config.max_concurrent_downloads.max(1),
            ..ClientConfig::default()
        };
        let client = Client::new(config);
        if clients.len() >= 64 {
            clients.clear();
        }
        clients.insert(key, client.clone());
        client
    }

    /// Schemes to try for an endpoint, in order (true = plain HTTP). Secure
    /// registries: HTTPS only. Insecure ones: HTTPS first, then HTTP, unless
    /// an earlier pull found which one the host speaks.
    fn schemes(&self, endpoint: &Endpoint) -> Vec<bool> {
        if !endpoint.insecure {
            return vec![false];
        }
        let known = self
            .plain_http_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&endpoint.name.registry)
            .copied();
        match known {
            Some(plain) => vec![plain],
            None => vec![false, true],
        }
    }

    fn remember_scheme(&self, endpoint: &Endpoint, plain_http: bool) {
        if endpoint.insecure {
            self.plain_http_hosts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(endpoint.name.registry.clone(), plain_http);
        }
    }

    /// Credentials for an endpoint: the caller's, else the config's for that host.
    fn auth_for(
        &self,
        endpoint: &Endpoint,
        explicit: Option<&Credentials>,
    ) -> Result<RegistryAuth, Error> {
        let host = canonical_registry(&endpoint.name.registry);
        let access = self.access();
        let from_config = access.auths.get(&host).or_else(|| {
            (host == "docker.io")
                .then(|| access.auths.get("index.docker.io"))
                .flatten()
        });
        if let Some(c) = explicit.or(from_config) {
            return registry_auth(Some(c), &host);
        }
        let Some(path) = &access.auth_file else {
            return registry_auth(None, &host);
        };
        let file = AuthFile::load(path)?;
        registry_auth(file.lookup(&host, &endpoint.name.repository), &host)
    }

    /// Pulls `reference`, trying each name a short name may mean.
    /// Counted in the pull metrics, logged every [`PROGRESS_INTERVAL`] while it runs,
    /// and traced in a `pull` span; `progress` follows its layers.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        auth: Option<&Credentials>,
        progress: Arc<PullProgress>,
    ) -> Result<Image, Error> {
        let start = Instant::now();
        let metrics = crius_metrics::metrics();
        let _in_progress = metrics.pull_in_progress();
        let _reporter = ProgressReporter::start(progress.clone(), PROGRESS_INTERVAL);
        let span = tracing::info_span!("pull", image = reference);
        let result = self
            .pull_candidates(reference, auth, &progress)
            .instrument(span)
            .await;
        metrics.record_pull(
            result.as_ref().map(|_| ()).map_err(Error::metric_reason),
            start.elapsed(),
        );
        result
    }

    async fn pull_candidates(
        self: &Arc<Self>,
        reference: &str,
        auth: Option<&Credentials>,
        progress: &Arc<PullProgress>,
    ) -> Result<Image, Error> {
        let start = Instant::now();
        let candidates = self.access().registries.candidates(reference)?;
        let mut errors = Vec::new();
        for name in &candidates {
            match self.pull_name(name, auth, progress).await {
                Ok(image) => {
                    info!(
                        image = %name,
                        id = %image.id,
                        elapsed = ?start.elapsed(),
                        "pulled image"
                    );
                    return Ok(image);
                }
                Err(e) => {
                    if candidates.len() > 1 {
                        debug!(image = %name, error = %e, "candidate failed");
                    }
                    errors.push(e);
                }
            }
        }
        Err(pick_error(errors, reference))
    }

    async fn pull_name(
        self: &Arc<Self>,
        name: &ImageName,
        auth: Option<&Credentials>,
        progress: &Arc<PullProgress>,
    ) -> Result<Image, Error> {
        let endpoints = self.access().registries.endpoints(name)?;
        let mut errors = Vec::new();
        let mut resolved = None;
        for ep in endpoints {
            match self.resolve_manifest(name, &ep, auth).await {
                Ok(r) => {
                    resolved = Some(r);
                    break;
                }
                Err(e) => {
                    if ep.mirror {
                        warn!(image = %name, mirror = %ep.name.registry, error = %e, "mirror failed, trying next");
                    }
                    errors.push(e);
                }
            }
        }
        let Some(r) = resolved else {
            return Err(pick_error(errors, &name.to_string()));
        };
        self.fetch_and_record(name, r, progress).await
    }

    /// Fetches the manifest (through an index if needed) at one endpoint.
    async fn resolve_manifest(
        &self,
        name: &ImageName,
        ep: &Endpoint,
        explicit: Option<&Credentials>,
    ) -> Result<Resolved, Error> {
        let image = name.to_string();
        let registry = ep.name.registry.clone();
        let auth = self.auth_for(ep, explicit)?;
        let oref = to_oci_reference(&ep.name);
        let t = Instant::now();
        let schemes = self.schemes(ep);
        let mut fetched = None;
        for (i, plain_http) in schemes.iter().copied().enumerate() {
            let client = self.client(ep, &auth, plain_http);
            match self
                .fetch_manifest(&client, ep, &oref, &auth, plain_http, &image)
                .await
            {
                Ok(answer) => {
                    self.remember_scheme(ep, plain_http);
                    fetched = Some((client, plain_http, answer));
                    break;
                }
                // no TLS there (or nothing at all): try plain HTTP next
                Err(e) if e.is_unavailable() && i + 1 < schemes.len() => {
                    debug!(endpoint = %ep.name, error = %e, "HTTPS failed, trying HTTP");
                }
                Err(e) => return Err(e),
            }
        }
        let Some((client, plain_http, raw)) = fetched else {
            return Err(Error::RegistryUnreachable {
                image,
                registry,
                reason: "no scheme to try".into(),
            });
        };
        debug!(image = %image, endpoint = %ep.name, bytes = raw.len(), elapsed = ?t.elapsed(), "manifest fetched");
        let invalid = |reason: String| Error::InvalidManifest {
            image: image.clone(),
            reason,
        };
        let top_digest = sha256_digest(&raw);
        if let Some(want) = &name.digest {
            let got = match want.split_once(':') {
                Some(("sha512", _)) => {
                    format!("sha512:{}", hex::encode(sha2::Sha512::digest(&raw)))
                }
                _ => top_digest.clone(),
            };
            if *want != got {
                return Err(invalid(format!(
                    "manifest digest {top_digest}, wanted {want}"
                )));
            }
        }
        let parsed: RawManifest = serde_json::from_slice(&raw)
            .map_err(|e| invalid(format!("cannot parse manifest: {e}")))?;
        let media_type = parsed.media_type.clone().unwrap_or_default();
        if parsed.schema_version == Some(1)
            || media_type == MT_DOCKER_SCHEMA1
            || media_type == MT_DOCKER_SCHEMA1_SIGNED
        {
            return Err(Error::UnsupportedMediaType {
                image,
                media_type: MT_DOCKER_SCHEMA1.to_string(),
            });
        }
        let (manifest, manifest_raw, manifest_digest, index_raw) =
            if let Some(entries) = &parsed.manifests {
                let Some(entry) = choose_platform(entries) else {
                    let (os, arch, variant) = host_platform();
                    let available = entries
                        .iter()
                        .filter_map(|e| e.platform.as_ref())
                        .map(|p| match &p.variant {
                            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                            None => format!("{}/{}", p.os, p.architecture),
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(Error::NoMatchingPlatform {
                        image,
                        platform: match variant {
                            Some(v) => format!("{os}/{arch}/{v}"),
                            None => format!("{os}/{arch}"),
                        },
                        available,
                    });
                };
                if !valid_digest(&entry.digest) {
                    return Err(invalid(format!("index entry digest {:?}", entry.digest)));
                }
                if let Some(mt) = &entry.media_type {
                    if mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST {
                        return Err(Error::UnsupportedMediaType {
                            image,
                            media_type: mt.clone(),
                        });
                    }
                }
                let child_ref = oref.clone_with_digest(entry.digest.clone());
                let child_raw = self
                    .fetch_manifest(&client, ep, &child_ref, &auth, plain_http, &image)
                    .await?;
                let child_digest = sha256_digest(&child_raw);
                if child_digest != entry.digest {
                    return Err(invalid(format!(
                        "manifest {} has digest {child_digest}",
                        entry.digest
                    )));
                }
                let child: RawManifest = serde_json::from_slice(&child_raw)
                    .map_err(|e| invalid(format!("cannot parse manifest {}: {e}", entry.digest)))?;
                if child.manifests.is_some() {
                    return Err(invalid("index inside an index".into()));
                }
                (child, child_raw, child_digest, Some(raw))
            } else {
                (parsed, raw, top_digest.clone(), None)
            };
        let config = manifest
            .config
            .ok_or_else(|| invalid("manifest has no config".into()))?;
        if config.media_type != MT_OCI_CONFIG && config.media_type != MT_DOCKER_CONFIG {
            return Err(Error::UnsupportedMediaType {
                image,
                media_type: config.media_type,
            });
        }
        if digest_hex(&config.digest).is_none() || config.size < 0 {
            return Err(invalid(format!("bad config descriptor {}", config.digest)));
        }
        let max_config = self.config.limits.max_config_size;
        if config.size as u64 > max_config {
            return Err(Error::LimitExceeded {
                what: format!("image {image}"),
                found: format!("config {} of {} bytes", config.digest, config.size),
                key: "max_config_size",
                limit: max_config,
            });
        }
        let layers = manifest.layers.unwrap_or_default();
        for l in &layers {
            if layer_compression(&l.media_type).is_none() {
                return Err(Error::UnsupportedMediaType {
                    image,
                    media_type: l.media_type.clone(),
                });
            }
            if digest_hex(&l.digest).is_none() || l.size < 0 {
                return Err(invalid(format!("bad layer descriptor {}", l.digest)));
            }
        }
        Ok(Resolved {
            client,
            auth,
            endpoint: ep.clone(),
            top_digest,
            manifest_digest,
            manifest_raw,
            index_raw,
            config,
            layers,
        })
    }

    /// Downloads config and layers from the resolved endpoint and records the image.
    async fn fetch_and_record(
        self: &Arc<Self>,
        name: &ImageName,
        r: Resolved,
        progress: &Arc<PullProgress>,
    ) -> Result<Image, Error> {
        let image = name.to_string();
        let registry = r.endpoint.name.registry.clone();
        let oref = to_oci_reference(&r.endpoint.name);
        r.client
            .store_auth_if_needed(oref.resolve_registry(), &r.auth)
            .await;

        // already here: only the names change
        let mut meta_blobs: Vec<(&str, &[u8])> = vec![(&r.manifest_digest, &r.manifest_raw)];
        if let Some(idx) = &r.index_raw {
            meta_blobs.push((&r.top_digest, idx));
        }
        if let Some(img) =
            self.record_existing_id(name, &r.config.digest, &r.top_digest, &meta_blobs)?
        {
            debug!(image = %image, id = %img.id, "image already present");
            return Ok(img);
        }

        let config_desc = OciDescriptor {
            media_type: r.config.media_type.clone(),
            digest: r.config.digest.clone(),
            size: r.config.size,
            urls: None,
            annotations: None,
            ..OciDescriptor::default()
        };
        let max_config = self.config.limits.max_config_size;
        let mut config_sink = BoundedSink::new(max_config);
        let fetched = r
            .client
            .pull_blob(&oref, &config_desc, &mut config_sink)
            .await;
        if config_sink.over {
            return Err(Error::LimitExceeded {
                what: format!("image {image}"),
                found: format!(
                    "config {} sent more than {max_config} bytes",
                    r.config.digest
                ),
                key: "max_config_size",
                limit: max_config,
            });
        }
        fetched.map_err(|e| map_err(e, &image, &registry))?;
        let config_raw = config_sink.buf;
        let config_digest = sha256_digest(&config_raw);
        if config_digest != r.config.digest {
            return Err(Error::LayerDigestMismatch {
                image,
                layer: "config".into(),
                expected: r.config.digest.clone(),
                actual: config_digest,
            });
        }
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_raw)
            .map_err(|e| Error::InvalidManifest {
                image: image.clone(),
                reason: format!("cannot parse config {}: {e}", r.config.digest),
            })?;
        let diff_ids: Vec<String> = config.rootfs().diff_ids().to_vec();
        if diff_ids.len() != r.layers.len() {
            return Err(Error::InvalidManifest {
                image,
                reason: format!(
                    "manifest has {} layers, config lists {} diff ids",
                    r.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        if let Some(bad) = diff_ids.iter().find(|d| digest_hex(d).is_none()) {
            return Err(Error::InvalidManifest {
                image,
                reason: format!("invalid diff id {bad:?}"),
            });
        }
        let chains = chain_ids(&diff_ids);
        let _pins = self.pin_layers(&chains);

        // layers in parallel, bounded by the store-wide download semaphore
        let jobs = r.layers.iter().enumerate().map(|(i, desc)| {
            let counter = progress.layer(&desc.digest, u64::try_from(desc.size).unwrap_or(0));
            let job = LayerJob {
                image: image.clone(),
                chain_id: chains[i].clone(),
                parent: i.checked_sub(1).map(|p| chains[p].clone()),
                diff_id: diff_ids[i].clone(),
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                size: u64::try_from(desc.size).unwrap_or(0),
                compression: layer_compression(&desc.media_type).unwrap_or(Compression::Gzip),
            };
            let desc = OciDescriptor {
                media_type: desc.media_type.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                urls: desc.urls.clone(),
                annotations: None,
                ..OciDescriptor::default()
            };
            self.ensure_layer(&r.client, &oref, desc, job, &registry, counter)
        });
        // every layer job ends (commits or cleans up) before a failure is
        // reported, so the pin guard's cleanup sees all that this pull made
        let results = futures::future::join_all(jobs).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }

        let size = r
            .layers
            .iter()
            .map(|l| u64::try_from(l.size).unwrap_or(0))
            .sum::<u64>()
            + u64::try_from(r.config.size).unwrap_or(0);
        let record = ImageRecord {
            id: r.config.digest.clone(),
            repo_tags: name.tagged().into_iter().collect(),
            repo_digests: vec![name.with_digest(&r.top_digest)],
            size,
            pinned: false,
            manifest: r.manifest_digest.clone(),
            layers: chains,
        };
        meta_blobs.push((&r.config.digest, &config_raw));
        self.record_with_blobs(record, &meta_blobs)
    }

    /// Downloads and unpacks one layer unless it is already there. Concurrent
    /// pulls of the same layer wait for the first one.
    async fn ensure_layer(
        self: &Arc<Self>,
        client: &Client,
        oref: &Reference,
        desc: OciDescriptor,
        job: LayerJob,
        registry: &str,
        counter: Arc<LayerCounter>,
    ) -> Result<(), Error> {
        let lock = self.layer_lock(&job.chain_id);
        let _held = lock.lock().await;
        let reused = || {
            counter.set_state(LayerState::Reused);
            crius_metrics::metrics().record_layer_reuse();
            Ok(())
        };
        if self.layers.exists(&job.chain_id) {
            return reused();
        }
        let _permit = self
            .downloads
            .acquire()
            .await
            .map_err(|_| Error::Registry {
                image: job.image.clone(),
                registry: registry.to_string(),
                reason: "image store is shutting down".into(),
            })?;
        if self.layers.exists(&job.chain_id) {
            return reused();
        }
        counter.set_state(LayerState::Downloading);
        self.download_count.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        debug!(layer = %job.digest, size = job.size, "downloading layer");
        let mut stream = client.pull_blob_stream(oref, &desc).await.map_err(|e| {
            match map_err(e, &job.image, registry) {
                // the manifest was there: a missing blob is the registry's fault
                Error::ImageNotFound { image, .. } => Error::Registry {
                    image,
                    registry: registry.to_string(),
                    reason: format!("layer {} is missing in the registry", job.digest),
                },
                other => other,
            }
        })?;
        let (tx, rx) = mpsc::channel::<Chunk>(64);
        let inner = Arc::clone(self);
        let digest = job.digest.clone();
        let size = job.size;
        let worker =
            tokio::task::spawn_blocking(move || unpack_blob(&inner, &job, BlobReader::new(rx)));
        let mut failed = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => {
                    counter.add(bytes.len() as u64);
                    if tx.send(Chunk::Data(bytes)).await.is_err() {
                        failed = true; // the unpacker gave up; its error says why
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Chunk::Failed(chain(&e))).await;
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            let _ = tx.send(Chunk::End).await;
        }
        drop(tx);
        let result = worker.await.map_err(|e| Error::Registry {
            image: String::new(),
            registry: registry.to_string(),
            reason: format!("unpack task of layer {digest} failed: {e}"),
        })?;
        let result = result.map_err(|e| match e {
            Error::Registry { image, reason, .. } => Error::Registry {
                image,
                registry: registry.to_string(),
                reason,
            },
            other => other,
        });
        debug!(layer = %digest, elapsed = ?start.elapsed(), ok = result.is_ok(), "layer done");
        if result.is_ok() {
            counter.set_state(LayerState::Done);
            crius_metrics::metrics().record_layer_download(size);
        }
        result
    }
}

/// Picks the most telling of several endpoint / candidate errors.
fn pick_error(mut errors: Vec<Error>, image: &str) -> Error {
    if errors.is_empty() {
        return Error::ImageNotFound {
            image: image.to_string(),
            registry: None,
        };
    }
    let mut best = 0;
    for (i, e) in errors.iter().enumerate() {
        if error_rank(e) > error_rank(&errors[best]) {
            best = i;
        }
    }
    errors.swap_remove(best)
}

/// Registry auth per host from the daemon config, with normalized keys.
pub fn normalize_auth_keys(auths: &HashMap<String, Credentials>) -> HashMap<String, Credentials> {
    auths
        .iter()
        .map(|(k, v)| {
            let host = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(k);
            (canonical_registry(host), v.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, d: char) -> RawIndexEntry {
        RawIndexEntry {
            media_type: Some(MT_OCI_MANIFEST.into()),
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            platform: Some(RawPlatform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn platform_choice_takes_the_host_and_ignores_others() {
        let (_, arch, _) = host_platform();
        let entries = vec![
            entry("linux", "s390x-not-this", None, '1'),
            entry("windows", arch, None, '2'),
            entry("linux", arch, None, '3'),
            entry("unknown", "unknown", None, '4'),
        ];
        assert_eq!(choose_platform(&entries).unwrap().digest, entries[2].digest);
        assert!(choose_platform(&entries[..2]).is_none());
    }

    #[test]
    fn credentials_map_to_registry_auth() {
        assert!(matches!(
            registry_auth(None, "r").unwrap(),
            RegistryAuth::Anonymous
        ));
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert!(
            matches!(registry_auth(Some(&c), "r").unwrap(), RegistryAuth::Basic(u, p) if u == "u" && p == "p")
        );
        let c = Credentials {
            auth: base64::engine::general_purpose::STANDARD.encode("crius:se:cret"),
            ..Default::default()
        };
        assert!(
            matches!(registry_auth(Some(&c), "r").unwrap(), RegistryAuth::Basic(u, p) if u == "crius" && p == "se:cret")
        );
        let c = Credentials {
            registry_token: "tok".into(),
            username: "u".into(),
            ..Default::default()
        };
        assert!(
            matches!(registry_auth(Some(&c), "r").unwrap(), RegistryAuth::Bearer(t) if t == "tok")
        );
        let c = Credentials {
            auth: "!!!".into(),
            ..Default::default()
        };
        assert!(registry_auth(Some(&c), "r")
            .unwrap_err()
            .is_invalid_argument());
    }

    #[test]
    fn auth_keys_are_normalized() {
        let mut m = HashMap::new();
        m.insert(
            "https://index.docker.io/v1/".to_string(),
            Credentials::default(),
        );
        m.insert("127.0.0.1:5001".to_string(), Credentials::default());
        let n = normalize_auth_keys(&m);
        assert!(n.contains_key("docker.io"));
        assert!(n.contains_key("127.0.0.1:5001"));
    }

    #[test]
    fn the_most_telling_error_wins() {
        let unreachable = Error::RegistryUnreachable {
            image: "i".into(),
            registry: "r".into(),
            reason: "x".into(),
        };
        let nf = Error::ImageNotFound {
            image: "i".into(),
            registry: Some("m".into()),
        };
        assert!(pick_error(vec![nf, unreachable], "i").is_not_found());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            layer_compression("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
            None
        );
    }
}
