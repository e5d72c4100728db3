//! Bearer token auth and HTTPS registries.
//!
//! The Bearer token flow: a docker-registry configured with `auth: token`
//! answers 401 with `WWW-Authenticate: Bearer realm=...`; the client gets a
//! token from the realm with the user's credentials and retries with it.
//!
//! The token service is a small HTTP server in this test handing out a JWT
//! signed (RS256, `openssl dgst`) by a key whose self-signed certificate the
//! registry trusts (`rootcertbundle`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use common::{block_on, store_with, Fixtures, ScratchRegistry};
use crius_image::Credentials;

const USER: &str = "token-user";
const PASS: &str = "token-pass";
const SERVICE: &str = "crius-test";
const ISSUER: &str = "crius-test-issuer";

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for this test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A JWT for `repo` with pull and push access, signed by dir/key.pem.
fn make_token(dir: &Path, repo: &str) -> String {
    let der = openssl(&["x509", "-in", "cert.pem", "-outform", "DER"], dir);
    let x5c = base64::engine::general_purpose::STANDARD.encode(&der);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "crius-test-token",
        "access": [{"type": "repository", "name": repo, "actions": ["pull", "push"]}],
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    std::fs::write(dir.join("signing-input"), &signing_input).unwrap();
    let sig = openssl(
        &["dgst", "-sha256", "-sign", "key.pem", "signing-input"],
        dir,
    );
    format!("{signing_input}.{}", b64url(&sig))
}

/// Answers GET /token: 200 with the token for the right basic credentials, 401 otherwise.
struct TokenServer {
    addr: String,
    stop: Arc<AtomicBool>,
    pub issued: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(token: String) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let (stop2, issued2) = (stop.clone(), issued.clone());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
        );
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut authorized = false;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") && v.trim() == expected {
                            authorized = true;
                        }
                    }
                    line.clear();
                }
                let (status, body) = if authorized {
                    issued2.fetch_add(1, Ordering::SeqCst);
                    (
                        "200 OK",
                        serde_json::json!({"token": token, "access_token": token, "expires_in": 3600})
                            .to_string(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"details":"bad credentials"}"#.to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer {
            addr,
            stop,
            issued,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn bearer_token_flow_with_user_credentials_and_with_a_registry_token() {
    let f = Fixtures::load();
    let keys = common::disk_tempdir();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=crius-test-token",
        ],
        keys.path(),
    );
    let repo = "secure/busybox";
    let token = make_token(keys.path(), repo);
    let server = TokenServer::start(token.clone());
    let reg = ScratchRegistry::start_with(&format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        server.addr,
        keys.path().join("cert.pem").display()
    ));

    // push through the token flow (skopeo) so the registry holds the image
    let oci = std::path::PathBuf::from(f.get("CRIUS_TEST_OCI_DIR")).join("busybox");
    let name = reg.push_args(
        &oci,
        "latest",
        repo,
        &[
            "--preserve-digests",
            "--dest-creds",
            &format!("{USER}:{PASS}"),
        ],
    );
    let conf = format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        reg.addr
    );

    // no credentials: the token service refuses, so does the registry
    let t = store_with(&conf, |_| {});
    let err = block_on(t.store.pull(&name, None)).unwrap_err();
    assert!(err.is_unauthorized(), "anonymous: {err}");

    let wrong = Credentials {
        username: USER.into(),
        password: "nope".into(),
        ..Default::default()
    };
    let err = block_on(t.store.pull(&name, Some(&wrong))).unwrap_err();
    assert!(err.is_unauthorized(), "wrong password: {err}");
    assert!(t.store.list().is_empty());

    let before = server.issued.load(Ordering::SeqCst);
    let right = Credentials {
        username: USER.into(),
        password: PASS.into(),
        ..Default::default()
    };
    let img = block_on(t.store.pull(&name, Some(&right))).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_BUSYBOX_ID"));
    assert!(
        server.issued.load(Ordering::SeqCst) > before,
        "the pull did not go through the token service"
    );

    // a registry token from the CRI AuthConfig is sent as is
    let t2 = store_with(&conf, |_| {});
    let bearer = Credentials {
        registry_token: token,
        ..Default::default()
    };
    let img2 = block_on(t2.store.pull(&name, Some(&bearer))).unwrap();
    assert_eq!(img2.id, img.id);
}

#[test]
fn https_registry_with_an_untrusted_certificate_needs_insecure() {
    let f = Fixtures::load();
    let keys = common::disk_tempdir();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        keys.path(),
    );
    // nested under `http:` of the scratch registry's config
    let reg = ScratchRegistry::start_with(&format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        keys.path().join("cert.pem").display(),
        keys.path().join("key.pem").display()
    ));
    let oci = std::path::PathBuf::from(f.get("CRIUS_TEST_OCI_DIR")).join("busybox");
    let name = reg.push(&oci, "latest", "tls/busybox");

    // not marked insecure: the self-signed certificate is refused
    let strict = store_with("", |_| {});
    let err = block_on(strict.store.pull(&name, None)).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(strict.store.list().is_empty());

    // insecure: HTTPS without verification (tried before plain HTTP)
    let lax = store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        |_| {},
    );
    let img = block_on(lax.store.pull(&name, None)).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_BUSYBOX_ID"));
}
