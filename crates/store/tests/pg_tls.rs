//! TLS to PostgreSQL (`pg/tls.rs`): a server with TLS on a loopback port and a certificate for
//! `localhost` signed by a test CA. libpq's `sslmode`s behave as libpq's: `require` encrypts,
//! `verify-ca` checks the chain, `verify-full` the chain and the name; a wrong CA or name is
//! refused saying so. Skipped, saying so, where PostgreSQL is not installed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![allow(dead_code)] // Of the shared PostgreSQL helpers, only the private cluster is used here.

mod pg;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rephub_store::{PgStore, ReputationStore};

/// A CA's certificate (PEM), and a server certificate for `localhost` it signed, with its key.
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "rephub test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Whether the server sees this session encrypted (asked over the Unix socket, by the admin).
fn encrypted_sessions(cluster: &pg::PrivateCluster, db: &str) -> i64 {
    let mut c = postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
    c.query_one(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE s.ssl AND a.datname = $1",
        &[&db],
    )
    .unwrap()
    .get(0)
}

#[test]
fn sslmodes_encrypt_and_check_as_libpq_does() {
    let (ca, cert, key) = certificates();
    let Some(cluster) = pg::PrivateCluster::with_tls(Some((&cert, &key))) else {
        return;
    };
    cluster.database("tls");
    let port = cluster.port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let (other_ca, _, _) = certificates();
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other_ca).unwrap();
    let tcp =
        |host: &str, tls: &str| format!("host={host} port={port} user=postgres dbname=tls {tls}");

    // Encrypted without checks (require), with the chain checked (verify-ca, also for an
    // address the certificate does not name), with chain and name (verify-full), and in URL form.
    let ca = ca_file.display();
    for conninfo in [
        tcp("127.0.0.1", "sslmode=require"),
        tcp("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={ca}")),
        tcp(
            "localhost",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        format!("postgresql://postgres@localhost:{port}/tls?sslmode=verify-full&sslrootcert={ca}"),
    ] {
        let store = PgStore::connect(&conninfo).unwrap_or_else(|e| panic!("{conninfo}: {e}"));
        assert_eq!(store.last_seq().unwrap(), 0);
        assert!(
            encrypted_sessions(&cluster, "tls") >= 1,
            "{conninfo}: not encrypted"
        );
        drop(store);
    }

    // Refused: a name the certificate does not have, another CA (`require` with a root file
    // checks the chain, as libpq's does).
    for (conninfo, why) in [
        (
            tcp(
                "127.0.0.1",
                &format!("sslmode=verify-full sslrootcert={ca}"),
            ),
            "127.0.0.1",
        ),
        (
            tcp(
                "localhost",
                &format!("sslmode=verify-full sslrootcert={}", other_file.display()),
            ),
            "issuer",
        ),
        (
            tcp(
                "localhost",
                &format!("sslmode=require sslrootcert={}", other_file.display()),
            ),
            "issuer",
        ),
    ] {
        match PgStore::connect(&conninfo) {
            Err(e) => {
                let text = e.to_string();
                assert!(
                    !matches!(e, rephub_store::StoreError::Unavailable(_)),
                    "{text}"
                );
                assert!(
                    text.contains("certificate") || text.contains(why),
                    "{conninfo}: {text}"
                );
            }
            Ok(_) => panic!("{conninfo}: connected"),
        }
    }

    // A root file that is not there is named.
    let missing = tcp(
        "localhost",
        "sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
    );
    let e = PgStore::connect(&missing).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    // Without TLS the session is plain.
    let plain = PgStore::connect(&tcp("127.0.0.1", "sslmode=disable")).unwrap();
    assert_eq!(encrypted_sessions(&cluster, "tls"), 0);
    drop(plain);
}
