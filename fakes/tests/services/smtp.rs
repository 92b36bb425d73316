//! SMTP sink: a full session recorded in the log, a bad mailbox via a 550 fault.

use serde_json::json;

use crate::support::{Fakes, Smtp};

async fn hello(smtp: &mut Smtp) {
    assert!(smtp.reply().await.starts_with("220 "));
    assert!(smtp
        .command("EHLO crm.artsvao.ru")
        .await
        .starts_with("250 "));
    // AUTH PLAIN with \0user\0pass, any credentials accepted.
    assert!(smtp
        .command("AUTH PLAIN AHVzZXIAcGFzcw==")
        .await
        .starts_with("235 "));
}

#[tokio::test]
async fn a_message_is_recorded_with_headers_and_unstuffed_body() {
    let fakes = Fakes::start(&[]).await;
    let mut smtp = fakes.smtp().await;
    hello(&mut smtp).await;
    assert!(smtp
        .command("MAIL FROM:<crm@artsvao.ru>")
        .await
        .starts_with("250 "));
    assert!(smtp
        .command("RCPT TO:<client3@example.ru>")
        .await
        .starts_with("250 "));
    assert!(smtp.command("DATA").await.starts_with("354 "));
    for line in [
        "From: crm@artsvao.ru",
        "To: client3@example.ru",
        "Subject: =?utf-8?b?0J3QsNC/0L7QvNC40L3QsNC90LjQtQ==?=",
        "Message-ID: <outbox-1@artsvao.ru>",
        "",
        "Занятие завтра.",
        "..точка в начале строки",
    ] {
        smtp.send(line).await;
    }
    assert!(smtp.command(".").await.starts_with("250 "));
    assert!(smtp.command("QUIT").await.starts_with("221 "));

    let messages = fakes.requests("smtp").await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["method"], "DATA");
    assert_eq!(message["path"], "client3@example.ru");
    assert_eq!(message["status"], 250);
    assert_eq!(message["body"]["from"], "crm@artsvao.ru");
    assert_eq!(message["body"]["to"], json!(["client3@example.ru"]));
    assert_eq!(message["body"]["subject"], "Напоминание");
    assert_eq!(message["body"]["message_id"], "<outbox-1@artsvao.ru>");
    assert_eq!(
        message["body"]["text"],
        "Занятие завтра.\r\n.точка в начале строки"
    );
}

#[tokio::test]
async fn a_550_fault_rejects_one_mailbox_and_accepts_the_others() {
    let fakes = Fakes::start(&[]).await;
    fakes
        .fault(json!({"service": "smtp", "fault": "status", "status": 550,
                      "path_prefix": "gone@example.ru"}))
        .await;
    let mut smtp = fakes.smtp().await;
    hello(&mut smtp).await;
    smtp.command("MAIL FROM:<crm@artsvao.ru>").await;
    assert_eq!(
        smtp.command("RCPT TO:<gone@example.ru>").await,
        "550 5.1.1 User unknown"
    );
    assert!(smtp
        .command("RCPT TO:<here@example.ru>")
        .await
        .starts_with("250 "));
    smtp.command("DATA").await;
    smtp.send("Subject: hi\r\n\r\nhello").await;
    assert!(smtp.command(".").await.starts_with("250 "));

    let log = fakes.requests("smtp").await;
    let summary: Vec<(String, String, serde_json::Value)> = log
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().into(),
                e["path"].as_str().unwrap().into(),
                e["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "RCPT".to_string(),
                "gone@example.ru".to_string(),
                json!(550)
            ),
            (
                "DATA".to_string(),
                "here@example.ru".to_string(),
                json!(250)
            ),
        ]
    );
}

#[tokio::test]
async fn timeout_after_receive_records_the_message_but_never_answers() {
    let fakes = Fakes::start(&[]).await;
    fakes
        .fault(json!({"service": "smtp", "fault": "timeout_after_receive"}))
        .await;
    let mut smtp = fakes.smtp().await;
    hello(&mut smtp).await;
    smtp.command("MAIL FROM:<crm@artsvao.ru>").await;
    smtp.command("RCPT TO:<a@example.ru>").await;
    smtp.command("DATA").await;
    smtp.send("Subject: hi\r\n\r\nhello\r\n.").await;
    let silence = tokio::time::timeout(std::time::Duration::from_millis(300), smtp.reply()).await;
    assert!(silence.is_err(), "no reply after the message");

    let log = fakes.requests("smtp").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], serde_json::Value::Null);
    assert_eq!(log[0]["fault"], "timeout_after_receive");
    assert_eq!(log[0]["body"]["text"], "hello");
}
