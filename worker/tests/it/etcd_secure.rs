//! A worker against an etcd that requires TLS with client certificates and has authentication
//! on: the etcd flags of `EtcdArgs` carry the worker through, and it refuses to run without them.

use cronfleet_common::testkit::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::Fleet;
use cronfleet_common::{JobName, Keys, RunStatus};
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl on PATH");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate for user `root`.
fn certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=cronfleet-test-ca",
        ],
    );
    for (name, cn) in [("server", "127.0.0.1"), ("client", "root")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reaches_an_etcd_with_mutual_tls_and_authentication() {
    let mut fleet = Fleet::new().await;
    let dir = fleet.dir.clone();
    certificates(&dir);
    let (client_port, peer_port) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client_port}");
    let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let _etcd = Etcd(
        Command::new("etcd")
            .args(["--name", "secure", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("secure=http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--cert-file",
                "server.pem",
                "--key-file",
                "server.key",
                "--trusted-ca-file",
                "ca.pem",
                "--client-cert-auth",
            ])
            .current_dir(&dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd on PATH"),
    );
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("client.pem"), read("client.key")));
    let mut admin = loop {
        let options = ConnectOptions::new()
            .with_tls(tls.clone())
            .with_timeout(Duration::from_secs(2));
        if let Ok(mut client) =
            etcd_client::Client::connect([endpoint.clone()], Some(options)).await
        {
            if client.get("probe", None).await.is_ok() {
                break client;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    admin
        .user_add("root", "root-password-for-tests", None)
        .await
        .unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let options = ConnectOptions::new()
        .with_tls(tls.clone())
        .with_user("root", "root-password-for-tests");
    fleet.etcd = etcd_client::Client::connect([endpoint.clone()], Some(options))
        .await
        .unwrap();
    fleet.env.etcd_endpoints = vec![endpoint.clone()];
    fleet.env.keys = Keys::default();

    let paths = |name: &str| dir.join(name).display().to_string();
    let (ca, cert, key) = (paths("ca.pem"), paths("client.pem"), paths("client.key"));
    let without_tls = fleet.worker("plain", &[]);
    let secure = fleet.worker(
        "secure",
        &[
            ("CRON_ETCD_CA_FILE", &ca),
            ("CRON_ETCD_CERT_FILE", &cert),
            ("CRON_ETCD_KEY_FILE", &key),
            ("CRON_ETCD_USER", "root"),
            ("CRON_ETCD_PASSWORD", "root-password-for-tests"),
        ],
    );
    fleet.registered(&["secure"]).await;
    fleet
        .put(
            fleet.env.keys.job(&JobName::parse("over-tls").unwrap()),
            r#"{"name":"over-tls","command":"echo secure","cronExpr":"* * * * * *"}"#,
        )
        .await;
    let records = fleet
        .wait_for_records(
            "over-tls",
            Duration::from_secs(15),
            "a run through the secure etcd",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert!(
        records.iter().all(|r| r.worker_id == "secure"),
        "only the worker with credentials runs jobs"
    );
    assert!(fleet.get(&fleet.env.keys.worker("plain")).await.is_none());
    let log = std::fs::read_to_string(&without_tls.log).unwrap_or_default();
    assert!(
        log.contains("etcd"),
        "the worker without TLS says why it cannot work: {log}"
    );
    assert_eq!(secure.stop().await, 0);
}
