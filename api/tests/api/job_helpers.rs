//! The test habits of job systems, used for real: `assert_enqueued` (what a request enqueued,
//! as its payload type) and `perform` (one handler run in-process, no worker).
use jobs::{
    kinds::{exports::TimesheetExport, subscriptions::EndSubscriptions},
    testing::{assert_enqueued, refute_enqueued},
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::time::Month;
use sqlx::PgPool;
use worker::{testing::perform, Registry};

use crate::support::*;

#[sqlx::test(migrations = false)]
async fn an_export_request_enqueues_the_callers_timesheet_job(db: PgPool) {
    // The api alone: the job stays queued where the assertion can read it.
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (user, token) = app.user("manager").await;
    let month = Month::current();
    let res = app
        .post(
            &token,
            "/api/exports/timesheets",
            json!({"month": month.key()}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();
    let (id, job) =
        assert_enqueued::<TimesheetExport>(&db, |j| j.requested_by == user && j.month == month)
            .await;
    assert_eq!(accepted["job_id"], id);
    assert_eq!(job.group_ids, None);
    refute_enqueued::<TimesheetExport>(&db, |j| j.month != month).await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn perform_runs_one_handler_and_records_its_outcome(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let (id, result) = perform(
        &db,
        &Registry::production(30, &worker::clients::Integrations::none()),
        &EndSubscriptions {},
    )
    .await;
    let report = result.unwrap();
    assert_eq!(
        report,
        json!({"ended": 0, "visits_burned": 0, "notices": 0})
    );
    let status: Value = app
        .get(&admin, &format!("/api/jobs/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["result"], report);
    app.stop().await;
}
