//! Deliveries over HTTPS to a receiver whose certificate a private CA signed.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::TimeDelta;
use server::webhooks::DeliveryConfig;

use super::{ALL_TYPES, Received, assert_signed_by, attempts, send_test_event, subscribe};
use crate::harness::TestApp;

/// A receiver over TLS on 127.0.0.1, its certificate signed by a CA made here; returns the
/// URL, the CA (DER) and what it received.
async fn tls_receiver() -> (String, Vec<u8>, Arc<Mutex<Vec<Received>>>) {
    use tokio_rustls::rustls;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(Received { headers, body });
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
                }
            });
        }
    });
    (url, ca.der().to_vec(), received)
}

#[tokio::test]
async fn deliveries_go_over_https_and_an_untrusted_certificate_is_a_connection_failure() {
    let app = TestApp::insecure_webhooks().await;
    let (url, ca, received) = tls_receiver().await;
    let key = app.partner(true).await;
    let (sub, secret) = subscribe(&app, &key, &url, &ALL_TYPES).await;
    send_test_event(&app, &key, &sub).await;

    // The public web PKI does not know our CA: refused like any bad certificate.
    app.deliverer().run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["errorKind"], "CONNECTION", "{log:?}");
    assert!(received.lock().unwrap().is_empty());

    // Trusting it (`--webhook-ca-file`), the retry goes through, signed as ever.
    let trusting = server::webhooks::Deliverer::with_roots(
        app.store.clone(),
        Arc::clone(&app.clock),
        app.targets.clone(),
        DeliveryConfig::default(),
        vec![reqwest::Certificate::from_der(&ca).unwrap()],
    )
    .unwrap();
    app.clock.shift(TimeDelta::seconds(10));
    assert_eq!(trusting.run_pending().await.unwrap(), 1);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_signed_by(&secret, &got[0]);
    assert_eq!(attempts(&app, &key, &sub).await[0]["statusCode"], 200);
}
