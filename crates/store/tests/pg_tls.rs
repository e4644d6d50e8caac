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

/// A client certificate for `user` (its common name), signed by a new CA: (CA PEM, cert, key).
fn client_certificate(user: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "rephub test client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let (cert, key) = signed_client(&issuer, user);
    (ca_cert.pem(), cert, key)
}

fn signed_client(issuer: &Issuer<'_, KeyPair>, user: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, user);
    (
        p.signed_by(&key, issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// PostgreSQL's `cert` authentication: the server takes the role whose name is the client
/// certificate's common name, signed by the CA it trusts, and nothing else (no password).
#[test]
fn a_client_certificate_signs_in_with_cert_authentication() {
    let (ca, cert, key) = certificates();
    let Some(cluster) = pg::PrivateCluster::with_tls(Some((&cert, &key))) else {
        return;
    };
    cluster.database("certs");
    let port = cluster.port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The server (the `postgres` user when we are root) reads the clients' CA from here.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    let ca_file = write("ca.pem", &ca);
    // The clients' CA, and two certificates it signed: for `rephub` and for `mallory`.
    let client_ca_key = KeyPair::generate().unwrap();
    let mut client_ca = CertificateParams::default();
    client_ca
        .distinguished_name
        .push(DnType::CommonName, "rephub clients");
    client_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let client_ca_pem = client_ca.self_signed(&client_ca_key).unwrap().pem();
    let issuer = Issuer::new(client_ca, client_ca_key);
    let client_ca_file = write("clients.pem", &client_ca_pem);
    let (good_cert, good_key) = signed_client(&issuer, "rephub");
    let (other_cert, other_key) = signed_client(&issuer, "mallory");
    let (_, foreign_cert, foreign_key) = client_certificate("rephub");
    let files = [
        (
            write("rephub.pem", &good_cert),
            write("rephub.key", &good_key),
        ),
        (
            write("mallory.pem", &other_cert),
            write("mallory.key", &other_key),
        ),
        (
            write("foreign.pem", &foreign_cert),
            write("foreign.key", &foreign_key),
        ),
    ];

    // The server: role `rephub` (no password), allowed over TLS by certificate only.
    let mut admin = postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "CREATE ROLE rephub LOGIN; GRANT ALL ON DATABASE certs TO rephub;
             ALTER DATABASE certs OWNER TO rephub",
        )
        .unwrap();
    // (On its own: not in a transaction block.)
    admin
        .batch_execute(&format!(
            "ALTER SYSTEM SET ssl_ca_file = '{}'",
            client_ca_file.display()
        ))
        .unwrap();
    let hba: String = admin.query_one("SHOW hba_file", &[]).unwrap().get(0);
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "hostssl certs rephub 127.0.0.1/32 cert\nhost certs rephub 127.0.0.1/32 reject\n{old}"
        ),
    )
    .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();

    let conninfo = |client: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut c = format!(
            "host=localhost port={port} user=rephub dbname=certs sslmode=verify-full sslrootcert={}",
            ca_file.display()
        );
        if let Some((cert, key)) = client {
            c.push_str(&format!(
                " sslcert={} sslkey={}",
                cert.display(),
                key.display()
            ));
        }
        c
    };
    // Its certificate: in, as `rephub`, and the store migrates its database.
    let store = PgStore::connect(&conninfo(Some(&files[0]))).unwrap();
    assert_eq!(store.last_seq().unwrap(), 0);
    let sessions: Vec<(String, Option<String>)> = admin
        .query(
            "SELECT a.usename::text, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a
             USING (pid) WHERE a.datname = 'certs'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!sessions.is_empty());
    for s in &sessions {
        assert_eq!(
            (s.0.as_str(), s.1.as_deref()),
            ("rephub", Some("/CN=rephub")),
            "signed in by its certificate: {sessions:?}"
        );
    }
    drop(store);

    // Refused: no certificate, a certificate for another name, one from another CA.
    for (client, case) in [
        (None, "no certificate"),
        (Some(&files[1]), "another name"),
        (Some(&files[2]), "another CA"),
    ] {
        match PgStore::connect(&conninfo(client)) {
            Ok(_) => panic!("{case}: connected"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    !matches!(e, rephub_store::StoreError::Unavailable(_)),
                    "{case}: {text}"
                );
                assert!(
                    text.contains("certificate") || text.contains("rephub"),
                    "{case}: {text}"
                );
            }
        }
    }
}
