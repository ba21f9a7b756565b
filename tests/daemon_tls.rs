//! The TCP listener with TLS and required client certificates: certificates generated with
//! rcgen at test time (a CA, a server certificate for localhost/127.0.0.1, a client certificate
//! signed by the CA, and a self-signed impostor). A client with the CA-signed certificate can
//! call health; no RPC succeeds without a certificate, with a certificate from another issuer,
//! or in plain text. Also the refusal to listen on a non-loopback address without TLS.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use spinloop::daemon::config::{DaemonConfig, TlsFiles};
use spinloop::daemon::server::{ServerError, start_in_process, tcp_channel, unix_channel};
use spinloop::daemon::tls::client_config;

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    impostor: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "spinloop test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(vec!["console-1".to_string()]).unwrap();
    cp.distinguished_name.push(DnType::CommonName, "console-1");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca).unwrap();

    let imp_key = KeyPair::generate().unwrap();
    let mut ip = CertificateParams::new(vec!["console-1".to_string()]).unwrap();
    ip.distinguished_name.push(DnType::CommonName, "console-1");
    ip.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let impostor = ip.self_signed(&imp_key).unwrap();

    Pki {
        ca_pem: ca.pem(),
        server: (server.pem(), server_key.serialize_pem()),
        client: (client.pem(), client_key.serialize_pem()),
        impostor: (impostor.pem(), imp_key.serialize_pem()),
    }
}

/// Whether a health check over this channel setup succeeds (connect + one RPC, bounded).
async fn health_ok(
    addr: std::net::SocketAddr,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<(), String> {
    let attempt = async {
        let ch = tcp_channel(addr, tls)
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        let r = HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| format!("rpc: {e:?}"))?;
        if r.into_inner().status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("not serving".to_string())
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requires_a_client_certificate_from_the_ca() {
    let dir = std::env::temp_dir().join(format!("spinloop-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = Tmp(dir);
    let p = pki();
    let write = |name: &str, text: &str| {
        let path = tmp.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsFiles {
        cert: write("server.pem", &p.server.0),
        key: write("server.key", &p.server.1),
        client_ca: write("ca.pem", &p.ca_pem),
    };
    let mut config = DaemonConfig::new(tmp.0.join("data"), tmp.0.join("d.sock"));
    config.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.tls = Some(files);
    let handle = start_in_process(config).await.unwrap();
    let addr = handle.tcp.unwrap();
    assert!(handle.listening.contains("tcp+tls"), "{}", handle.listening);

    let ca = p.ca_pem.as_bytes();
    // A console with a CA-signed certificate.
    let good = client_config(
        ca,
        Some((p.client.0.as_bytes(), p.client.1.as_bytes())),
        "localhost",
    );
    health_ok(addr, Some(good)).await.unwrap();

    // No certificate.
    let none = client_config(ca, None, "localhost");
    let r = health_ok(addr, Some(none)).await;
    assert!(r.is_err(), "a client without a certificate got through");
    println!("without a certificate: {r:?}");

    // A self-signed certificate not from the CA.
    let imp = client_config(
        ca,
        Some((p.impostor.0.as_bytes(), p.impostor.1.as_bytes())),
        "localhost",
    );
    let r = health_ok(addr, Some(imp)).await;
    assert!(
        r.is_err(),
        "a client with a foreign certificate got through"
    );
    println!("foreign certificate: {r:?}");

    // Plain text to the TLS port.
    let r = health_ok(addr, None).await;
    assert!(r.is_err(), "a plain-text client got through");
    println!("plain text: {r:?}");

    // The good client still works, and the Unix socket serves beside TCP.
    let good = client_config(
        ca,
        Some((p.client.0.as_bytes(), p.client.1.as_bytes())),
        "localhost",
    );
    health_ok(addr, Some(good)).await.unwrap();
    let ch = unix_channel(&handle.socket).await.unwrap();
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: "spinloop.v1.Console".into(),
        })
        .await
        .unwrap();

    handle.shutdown();
    handle.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tcp_without_tls_is_refused() {
    let dir = std::env::temp_dir().join(format!("spinloop-tls-refuse-{}", std::process::id()));
    let tmp = Tmp(dir);
    let mut config = DaemonConfig::new(tmp.0.join("data"), tmp.0.join("d.sock"));
    config.tcp = Some("0.0.0.0:0".parse().unwrap());
    let e = start_in_process(config).await.err().expect("refused");
    assert!(matches!(e, ServerError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("not a loopback"), "{e}");
    assert!(!tmp.0.join("d.sock").exists());

    // Plain TCP on loopback is allowed.
    let mut config = DaemonConfig::new(tmp.0.join("data"), tmp.0.join("d.sock"));
    config.tcp = Some("127.0.0.1:0".parse().unwrap());
    let handle = start_in_process(config).await.unwrap();
    health_ok(handle.tcp.unwrap(), None).await.unwrap();
    handle.shutdown();
    handle.join().await.unwrap();
}
