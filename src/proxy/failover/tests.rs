use super::*;
use http::StatusCode;

#[test]
fn retry_after_forms() {
    let mut h = HeaderMap::new();
    assert_eq!(retry_after(&h), None);
    h.insert("retry-after", "3".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    h.insert("retry-after-ms", "1500".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    let mut h = HeaderMap::new();
    h.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
    );
    assert_eq!(retry_after(&h), None);
}

#[test]
fn backoff_doubles_caps_and_jitters() {
    let b = Duration::from_millis(100);
    for round in 0..6 {
        let w = jittered(b, round);
        let full = b * (1 << round.min(3));
        assert!(
            w >= full / 2 && w <= full,
            "round {round}: {w:?} vs {full:?}"
        );
    }
    assert!(is_failover_status(StatusCode::TOO_MANY_REQUESTS));
    assert!(is_failover_status(StatusCode::from_u16(529).unwrap()));
    assert!(!is_failover_status(StatusCode::BAD_REQUEST));
}

#[test]
fn context_length_errors_are_recognised() {
    let openai = br#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let policy = br#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#;
    assert!(context_exceeded(openai));
    assert!(context_exceeded(anthropic));
    assert!(!context_exceeded(policy));
}
