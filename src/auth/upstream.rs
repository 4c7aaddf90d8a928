//! The relay's own upstream credential (`upstream_key_env`,
//! `upstream_key_header`).
//!
//! The key is read from the environment once, at start, and kept as a
//! ready header value marked sensitive. On a route that has it, the
//! client's `Authorization` and `x-api-key` are removed from every
//! upstream request, whatever they hold, and the relay's header is set: a
//! client key never reaches the upstream and the provider key never
//! reaches a client (the relay does not echo request headers, and its logs
//! name only the environment variable).

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::config::{UpstreamKey, UpstreamKeyHeader};

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The header a route's upstream requests carry instead of the client's.
pub(crate) struct Credential {
    name: HeaderName,
    value: HeaderValue,
}

impl Credential {
    pub(crate) fn new(key: &UpstreamKey) -> Self {
        let name = match key.header {
            UpstreamKeyHeader::Authorization => AUTHORIZATION,
            UpstreamKeyHeader::XApiKey => X_API_KEY.clone(),
        };
        let mut value = key.value.0.clone();
        value.set_sensitive(true);
        Self { name, value }
    }

    /// Replaces the client's credentials in upstream request headers.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        headers.remove(AUTHORIZATION);
        headers.remove(&X_API_KEY);
        headers.insert(self.name.clone(), self.value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretHeader;

    fn credential(header: UpstreamKeyHeader, value: &str) -> Credential {
        Credential::new(&UpstreamKey {
            env: "K".to_owned(),
            header,
            value: SecretHeader(HeaderValue::from_str(value).unwrap()),
        })
    }

    fn client_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer client"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer client2"));
        h.insert("x-api-key", HeaderValue::from_static("client"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h
    }

    #[test]
    fn replaces_client_credentials() {
        let mut h = client_headers();
        credential(UpstreamKeyHeader::Authorization, "Bearer relay").apply(&mut h);
        assert_eq!(h.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(h[AUTHORIZATION], "Bearer relay");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(h.get("x-api-key").is_none());

        let mut h = client_headers();
        credential(UpstreamKeyHeader::XApiKey, "relay").apply(&mut h);
        assert!(h.get(AUTHORIZATION).is_none());
        assert_eq!(h["x-api-key"], "relay");
        assert_eq!(h["content-type"], "application/json");
    }
}
