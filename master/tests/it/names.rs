//! Job names as go-crontab allows them — spaces, letters of any script, punctuation — through
//! every key, URL, header and page that carries one.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::pages::text;
use crate::support::Master;

const NAME: &str = "Nightly backup — café #1 100% <b>&\"?";
const ENCODED: &str = "Nightly%20backup%20%E2%80%94%20caf%C3%A9%20%231%20100%25%20%3Cb%3E%26%22%3F";

#[tokio::test]
async fn a_name_with_spaces_letters_and_punctuation_survives_keys_urls_headers_and_pages() {
    let master = Master::new().await;
    let created = master
        .post(
            "/api/v1/jobs",
            json!({"name": NAME, "command": "true", "cronExpr": "@daily"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let location = created.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/jobs/{ENCODED}"));
    let read = master.get(&location).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["name"], NAME);
    let runs = master.get(&format!("{location}/executions")).await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.body);
    master.project_all().await;
    assert_eq!(
        master.etcd_jobs().await[NAME]["name"],
        NAME,
        "the key is jobs/<name>"
    );

    let (cookie, csrf) = master.session("alice").await;
    let dashboard = master.page(Method::GET, "/", Some(&cookie), None).await;
    let page = text(&dashboard);
    assert!(
        page.contains(&format!("href=\"/jobs/{ENCODED}\"")),
        "{page}"
    );
    assert!(
        page.contains("café #1 100% &#60;b&#62;&#38;&#34;?"),
        "{page}"
    );
    assert!(!page.contains("<b>&"), "the name is escaped");
    let job_page = master
        .page(
            Method::GET,
            &format!("/jobs/{ENCODED}"),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(job_page.status, StatusCode::OK);
    assert!(text(&job_page).contains(&format!("action=\"/jobs/{ENCODED}/pause\"")));
    let paused = master
        .page(
            Method::POST,
            &format!("/jobs/{ENCODED}/pause"),
            Some(&cookie),
            Some(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(
        (paused.status, paused.headers["location"].to_str().unwrap()),
        (
            StatusCode::SEE_OTHER,
            format!("/jobs/{ENCODED}?done=pause").as_str()
        )
    );
    assert_eq!(master.get(&location).await.body["paused"], true);
    let history = master.get(&format!("/api/v1/events?job={ENCODED}")).await;
    assert_eq!(
        history.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        history.body
    );
}

#[tokio::test]
async fn names_that_are_unsafe_in_a_key_or_misleading_on_a_page_are_refused_by_field() {
    let master = Master::new().await;
    for bad in [
        "a/b",
        " lead",
        "trail ",
        "tab\there",
        "rtl\u{202e}exe",
        "zero\u{200b}width",
        "..",
    ] {
        let reply = master
            .post(
                "/api/v1/jobs",
                json!({"name": bad, "command": "true", "cronExpr": "@daily"}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["field"], "name", "{bad:?}");
    }
    assert_eq!(master.get("/api/v1/jobs").await.body["items"], json!([]));
}
