//! A `BEGIN` cut off while in flight (a client that disconnects, a timeout) must not return the
//! pooled connection inside a transaction: later autocommit writes would live in it and vanish.
use std::time::Duration;

use shared::config::DbConfig;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn a_begin_cut_off_midway_never_leaves_the_pooled_connection_in_a_transaction(db: PgPool) {
    sqlx::query("create table hygiene (n int primary key)")
        .execute(&db)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let base = base.rsplit_once('/').map(|(b, _)| b).unwrap();
    let name = db.connect_options().get_database().unwrap().to_string();
    let mut config = DbConfig::for_url(format!("{base}/{name}"));
    config.db_pool_size = 1;
    // The production pool (its release checks included), one connection: every begin and
    // every insert goes through the same session.
    let pool = shared::db::connect(&config, "pool-hygiene-test")
        .await
        .unwrap();
    let mut cut_off = 0;
    for i in 0..200i32 {
        let wait = Duration::from_micros(((i as u64) * 7919) % 500);
        match tokio::time::timeout(wait, pool.begin()).await {
            Ok(tx) => drop(tx.unwrap()),
            Err(_) => cut_off += 1,
        }
        sqlx::query("insert into hygiene (n) values ($1)")
            .bind(i)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert!(
        cut_off > 0,
        "no begin was cut off midway; the test proves nothing"
    );
    // Seen from another connection: every autocommit insert committed.
    let seen: i64 = sqlx::query_scalar("select count(*) from hygiene")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(seen, 200, "{cut_off} begins cut off");
    let stuck: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where application_name = 'pool-hygiene-test' and state like 'idle in transaction%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(stuck, 0);
    pool.close().await;
}
