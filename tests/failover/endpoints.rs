//! What belongs to an endpoint: the request's `model` (rewritten in the
//! request body only, never in answers) and the credential (`key_env`);
//! and how the access log and `/metrics` name endpoints and failures.

use http::HeaderValue;

use crate::support::*;
use crate::*;

/// The client's body: the top-level `model` first, and the same text
/// again further in, where it must stay.
const CLIENT_BODY: &str = r#"{"model":"client-model","stream":true,"temperature":0.25,"messages":[{"role":"user","content":"say \"model\":\"client-model\""}],"metadata":{"model":"client-model"}}"#;

#[tokio::test]
async fn the_request_model_is_the_endpoints_and_answers_are_not_rewritten() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).model("fallback-model")]),
        ]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, post(CHAT, CLIENT_BODY)).await;
        // b's events carry the model b was asked for, untouched on the way.
        assert_served(&r, &b, "fallback-model", CHAT);
        // a has no model of its own: the client's bytes as they were.
        assert_eq!(a.requests()[0].body, CLIENT_BODY);
        // b: the top-level model and nothing else.
        let want = CLIENT_BODY.replacen(
            r#""model":"client-model""#,
            r#""model":"fallback-model""#,
            1,
        );
        assert_eq!(b.requests()[0].body, want);
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(served_model(&line), Some("fallback-model"), "{line}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_models_rewrite_applies_to_json_requests_and_anthropic_bodies() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).model("claude-fallback")]),
        ]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, post(MESSAGES, body(MESSAGES, "m", false))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let want = healthy_json("b", "claude-fallback", MESSAGES);
        assert_same(&r.body, want.as_bytes(), "b's message");
        let got = b.requests()[0].body.clone();
        assert_eq!(got, body(MESSAGES, "claude-fallback", false));
        stop_relay(relay).await;
    })
    .await;
}

const CLIENT_BEARER: &str = "Bearer sk-client-0000";
const CLIENT_X_KEY: &str = "sk-client-x-1111";

fn with_client_keys(mut req: http::Request<TestBody>) -> http::Request<TestBody> {
    let h = req.headers_mut();
    h.insert("authorization", HeaderValue::from_static(CLIENT_BEARER));
    h.insert("x-api-key", HeaderValue::from_static(CLIENT_X_KEY));
    req
}

#[tokio::test]
async fn each_endpoint_gets_its_own_credential_and_never_the_clients() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![
            group("primary", [ep(&a).key("A_KEY", None)]),
            group("backup", [ep(&b).key("B_KEY", Some("x-api-key"))]),
        ]);
        let env = [("A_KEY", "sk-endpoint-a"), ("B_KEY", "sk-endpoint-b")];
        let (relay, _log) = start_route_file(&file, &env).await;
        let r = ask(relay.listen, with_client_keys(stream_req(CHAT, "m"))).await;
        assert_served(&r, &b, "m", CHAT);
        let (ra, rb) = (&a.requests()[0], &b.requests()[0]);
        assert_eq!(ra.header("authorization"), Some("Bearer sk-endpoint-a"));
        assert_eq!(ra.header("x-api-key"), None);
        assert_eq!(rb.header("x-api-key"), Some("sk-endpoint-b"));
        assert_eq!(rb.header("authorization"), None);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn an_endpoint_without_a_key_gets_the_clients_credentials() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![
            group("primary", [ep(&a).key("A_KEY", None)]),
            group("backup", [ep(&b)]),
        ]);
        let (relay, _log) = start_route_file(&file, &[("A_KEY", "sk-endpoint-a")]).await;
        let r = ask(relay.listen, with_client_keys(stream_req(CHAT, "m"))).await;
        assert_served(&r, &b, "m", CHAT);
        let rb = &b.requests()[0];
        assert_eq!(rb.header("authorization"), Some(CLIENT_BEARER));
        assert_eq!(rb.header("x-api-key"), Some(CLIENT_X_KEY));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn the_access_log_and_metrics_name_each_failed_attempt() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::failing("b", "reset").await;
        let c = FaultyUpstream::start("c").await;
        let file = route_file(vec![
            group("primary", [ep(&a)]),
            group("second", [ep(&b)]),
            group("third", [ep(&c).model("fb-model")]),
        ]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &c, "fb-model", CHAT);
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(served_by(&line), Some("c"), "{line}");
        assert_eq!(served_model(&line), Some("fb-model"), "{line}");
        assert_eq!(attempts(&line), Some(3), "{line}");
        let want = vec![
            ("a".to_owned(), class_of("503")),
            ("b".to_owned(), class_of("reset")),
        ];
        assert_eq!(failed_attempts(&line), want, "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(failovers(&m, "a", "b", &class_of("503")), 1.0, "{m}");
        assert_eq!(failovers(&m, "b", "c", &class_of("reset")), 1.0, "{m}");
        assert_eq!(all_failovers(&m), 2.0, "{m}");

        // Once nothing fails, one attempt serves (whichever endpoint the
        // breaker allows), nothing failed, nothing more counted.
        a.recover();
        b.recover();
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_eq!(r.status, 200);
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(attempts(&line), Some(1), "{line}");
        assert!(failed_attempts(&line).is_empty(), "{line}");
        assert_eq!(all_failovers(&metrics(relay.admin).await), 2.0);
        stop_relay(relay).await;
    })
    .await;
}
