//! HTTP limits: event streams capped per user while the pool serves everyone else, a
//! slow-loris client cut at the header timeout, handlers answering within the request
//! timeout, password hashing bounded, `/metrics` only where it is meant to be.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::*;
use reqwest::StatusCode;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[sqlx::test(migrations = false)]
async fn fifty_streams_from_one_user_get_five_and_429s_while_others_are_served(db: PgPool) {
    // No worker: the job stays queued and every stream stays open.
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (user, token) = app.user("manager").await;
    let (_, other) = app.user("manager").await;
    let id = app.enqueue(user, Steps::new(1, 1)).await;

    let opened = futures::future::join_all((0..50).map(|_| {
        let http = app.http.clone();
        let url = format!("{}/api/jobs/{id}/events", app.base);
        let token = token.clone();
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    }))
    .await;
    let statuses: Vec<u16> = opened.iter().map(|r| r.status().as_u16()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, refused), (5, 45), "{statuses:?}");
    let mut streams = Vec::new();
    for res in opened {
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            let e = error_body(res, StatusCode::TOO_MANY_REQUESTS).await;
            assert_eq!(e["code"], "rate_limited");
        } else {
            streams.push(res);
        }
    }

    // Meanwhile the pool serves another user at once: the open streams hold no connection.
    let started = Instant::now();
    for _ in 0..20 {
        let res = app.get(&other, "/api/jobs").await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 reads took {:?} beside 5 open streams",
        started.elapsed()
    );
    // The other user has their own five.
    let res = app.get(&other, &format!("/api/jobs/{id}/events")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "not their job");

    // Closing a stream frees its slot.
    drop(streams.pop());
    let reopened = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let res = app.get(&token, &format!("/api/jobs/{id}/events")).await;
            if res.status() == StatusCode::OK {
                return res;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a closed stream's slot was not freed");
    streams.push(reopened);
    assert_eq!(streams.len(), 5);
}

#[sqlx::test(migrations = false)]
async fn a_stream_ends_at_its_maximum_life_and_resumes_after_the_last_event(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&["--sse-max-life-secs", "1"])).await;
    let (user, token) = app.user("manager").await;
    let id = app.enqueue(user, Steps::new(1, 1)).await;
    let res = app.get(&token, &format!("/api/jobs/{id}/events")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(10), res.text())
        .await
        .expect("the stream outlived its maximum life")
        .unwrap();
    let last_id = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .next_back()
        .unwrap()
        .to_string();
    assert!(body.contains("\"state\":\"queued\""), "{body}");
    // The reconnect sends the last id and gets nothing twice.
    let res = app
        .http
        .get(format!("{}/api/jobs/{id}/events", app.base))
        .bearer_auth(&token)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), res.text())
        .await
        .unwrap()
        .unwrap();
    assert!(!again.contains("data: "), "replayed: {again}");
}

#[sqlx::test(migrations = false)]
async fn a_slow_loris_client_is_cut_off_at_the_header_timeout(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&["--header-read-timeout-secs", "2"])).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /api/health/liveness HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One header byte every 200 ms: never a complete head.
    let trickle = async {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
        rest
    };
    let answer = tokio::time::timeout(Duration::from_secs(8), trickle)
        .await
        .expect("the slow client was not cut off");
    let cut_after = started.elapsed();
    assert!(
        cut_after >= Duration::from_millis(1500) && cut_after < Duration::from_secs(5),
        "cut after {cut_after:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Others were served all along.
    let res = app
        .http
        .get(format!("{}/api/health/liveness", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[sqlx::test(migrations = false)]
async fn a_request_stuck_behind_a_lock_answers_503_at_the_request_timeout(db: PgPool) {
    let app = TestApp::spawn_with(
        db.clone(),
        None,
        api_config(&["--request-timeout-secs", "1"]),
    )
    .await;
    let (_, token) = app.user("manager").await;
    let mut blocker = db.begin().await.unwrap();
    sqlx::query("lock table clients in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let started = Instant::now();
    let res = app.get(&token, "/api/clients?search=Ив").await;
    let took = started.elapsed();
    assert!(res.headers().contains_key("retry-after"));
    let e = error_body(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(e["code"], "overloaded");
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    blocker.rollback().await.unwrap();
    let res = app.get(&token, "/api/clients?search=Ив").await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[sqlx::test(migrations = false)]
async fn logins_beyond_the_hashing_slots_get_503_with_retry_after(db: PgPool) {
    let app = TestApp::spawn_with(
        db,
        None,
        api_config(&[
            "--password-hash-concurrency",
            "1",
            "--password-hash-wait-ms",
            "0",
        ]),
    )
    .await;
    let (_, _) = app.user("manager").await;
    let email = format!("busy-{}@artsvao.test", uuid::Uuid::new_v4());
    api::auth::upsert_user(
        &app.db,
        &email,
        "correct horse battery",
        api::auth::Role::Manager,
    )
    .await
    .unwrap();
    let answers = futures::future::join_all((0..12).map(|_| {
        let http = app.http.clone();
        let url = format!("{}/api/auth/login", app.base);
        let email = email.clone();
        async move {
            let res = http
                .post(url)
                .json(&serde_json::json!({"email": email, "password": "correct horse battery"}))
                .send()
                .await
                .unwrap();
            (res.status(), res.headers().get("retry-after").cloned())
        }
    }))
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let busy: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(ok >= 1, "{answers:?}");
    assert!(
        !busy.is_empty(),
        "12 logins at once on one slot: {answers:?}"
    );
    assert!(busy.iter().all(|(_, retry)| retry.is_some()));
    assert_eq!(ok + busy.len(), 12, "{answers:?}");
}

#[sqlx::test(migrations = false)]
async fn metrics_are_served_only_with_the_token_or_on_the_internal_address(db: PgPool) {
    let open = TestApp::spawn_with(db.clone(), None, api_config(&["--metrics-token", ""])).await;
    let res = open
        .http
        .get(format!("{}/metrics", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "no token, no METRICS_ADDR"
    );

    let guarded = TestApp::spawn_with(
        db,
        None,
        api_config(&["--metrics-token", "scrape-token-0123456789"]),
    )
    .await;
    let url = format!("{}/metrics", guarded.base);
    let res = guarded.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = guarded
        .http
        .get(&url)
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = guarded
        .http
        .get(&url)
        .bearer_auth("scrape-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(text.contains("sse_streams_open"), "{text}");
}

#[sqlx::test(migrations = false)]
async fn an_office_behind_one_address_is_limited_per_user_and_proxies_are_trusted_by_config(
    db: PgPool,
) {
    let app = TestApp::spawn_with(
        db.clone(),
        None,
        api_config(&["--rate-limit", "3/60s", "--trusted-proxies", "127.0.0.1/32"]),
    )
    .await;
    let (_, a) = app.user("manager").await;
    let (_, b) = app.user("manager").await;
    // Two colleagues on one address: three requests each, not three between them.
    for token in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(
                app.get(token, "/api/auth/me").await.status(),
                StatusCode::OK
            );
        }
        let res = app.get(token, "/api/auth/me").await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // Anonymous requests count per client: behind the trusted proxy, per forwarded address.
    let anonymous = |forwarded: &'static str| {
        let http = app.http.clone();
        let url = format!("{}/api/clients", app.base);
        async move {
            http.get(url)
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for _ in 0..3 {
        assert_eq!(anonymous("198.51.100.7").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        anonymous("198.51.100.7").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(anonymous("198.51.100.8").await, StatusCode::UNAUTHORIZED);
    // A client's own forged hop left of the real one changes nothing.
    assert_eq!(
        anonymous("1.1.1.1, 198.51.100.7").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A proxy that adds its own header line: the last line names the client.
    let res = app
        .http
        .get(format!("{}/api/clients", app.base))
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = app
        .http
        .get(format!("{}/api/clients", app.base))
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the proxy's line counts"
    );

    // Without trusted proxies the header is ignored: one address, one limit.
    let direct = TestApp::spawn_with(db, None, api_config(&["--rate-limit", "3/60s"])).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = direct
            .http
            .get(format!("{}/api/clients", direct.base))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429]);
}
