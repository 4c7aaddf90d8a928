//! Tests of the single-value parsers and formatters.

use super::*;

#[test]
fn durations() {
    let ms = Duration::from_millis;
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("250ms"), Ok(ms(250)));
    assert_eq!(parse_duration("15s"), Ok(ms(15_000)));
    assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
    assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
    assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
    assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
    // humantime's grammar: any order, repeats add up, longer unit names.
    assert_eq!(parse_duration("30s1m"), Ok(ms(90_000)));
    assert_eq!(parse_duration("1s1s"), Ok(ms(2_000)));
    assert_eq!(parse_duration("2min"), Ok(ms(120_000)));
    assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
    assert_eq!(parse_duration("1000us"), Ok(ms(1)));
    for bad in [
        "", "5", "5x", "1.5s", "-1s", "+1s", "s", " 1s", "1s ", "1 s", "1m 30s", "1S", "5M", "1us",
        "1500us", "1ns",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert!(parse_duration("99999999999999999999h").is_err());
    assert!(parse_duration("18446744073709551615h").is_err());
    let too_large = Err("duration is too large".to_owned());
    assert_eq!(parse_duration("18446744073709551616ms"), too_large);
    assert_eq!(parse_duration("18446744073709552s"), too_large);
    assert_eq!(parse_duration("5x"), Err(DURATION_HINT.to_owned()));
    assert_eq!(parse_duration("1.5s"), Err(DURATION_HINT.to_owned()));
    assert!(
        parse_duration("1us")
            .unwrap_err()
            .ends_with("the smallest unit is ms")
    );
}

#[test]
fn duration_variants_and_format() {
    assert!(parse_positive_duration("0").is_err());
    assert!(parse_positive_duration("0s").is_err());
    assert_eq!(parse_optional_duration("0"), Ok(None));
    assert_eq!(
        parse_optional_duration("2s"),
        Ok(Some(Duration::from_secs(2)))
    );
    let min = Duration::from_millis(100);
    assert!(parse_duration_at_least("99ms", min).is_err());
    assert!(parse_duration_at_least("100ms", min).is_ok());
    for s in ["0", "250ms", "15s", "1m30s", "1h2m3s4ms"] {
        assert_eq!(parse_duration(s).map(format_duration).as_deref(), Ok(s));
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1024"), Ok(1024));
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
    assert_eq!(parse_size("32MiB"), Ok(32 << 20));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("2KB"), Ok(2_000));
    assert_eq!(parse_size("3MB"), Ok(3_000_000));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    for bad in [
        "", "KiB", "1kib", "1 KiB", "1.5MiB", "-1", "+1", "1TiB", "1k", "1K", "1B", "8mb", "3TB",
        "1e3", "1_000", " 5", "5 ",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} accepted");
    }
    assert!(parse_size("18446744073709551615").is_ok());
    let too_large = Err("size is too large".to_owned());
    assert_eq!(parse_size("18446744073709551616"), too_large);
    assert_eq!(parse_size("17179869184GiB"), too_large);
    assert!(
        parse_size("8mb")
            .unwrap_err()
            .starts_with("expected a size like")
    );
    for (n, shown) in [
        (0, "0"),
        (1500, "1500"),
        (8 << 20, "8MiB"),
        (3 << 30, "3GiB"),
        (500_000, "500KB"),
        (2_000_000, "2MB"),
        (1_024_000, "1000KiB"),
        (512_000_000, "512MB"),
        (3_000_000_000, "3GB"),
    ] {
        assert_eq!(format_size(n), shown);
        assert_eq!(parse_size(shown), Ok(n));
    }
}

#[test]
fn stream_values() {
    assert_eq!(parse_heartbeat("100ms"), Ok(Duration::from_millis(100)));
    assert!(parse_heartbeat("99ms").is_err());
    assert_eq!(parse_size_in("1KiB", 1 << 10, 1 << 30), Ok(1024));
    assert_eq!(
        parse_size_in("1023", 1 << 10, 1 << 30),
        Err("must be from 1KiB to 1GiB".to_owned())
    );
    assert!(parse_size_in("1025MiB", 1 << 10, 1 << 30).is_err());
    for (n, s) in [
        (0, "0"),
        (1500, "1500"),
        (8 << 20, "8MiB"),
        (3 << 30, "3GiB"),
    ] {
        assert_eq!(format_size(n), s);
        assert_eq!(parse_size(s), Ok(n));
    }
    for good in [": ping\n\n", "event: hb\ndata: {\"t\": {now_ms}}\n\n"] {
        assert_eq!(parse_keepalive_frame(good).as_deref(), Ok(good));
    }
    let bad = [
        "",
        "\n",
        "\n\n",
        ": a\n",
        ": a\n\n\n",
        "a\n\nb\n\n",
        "a\r\n\r\n",
    ];
    for frame in bad {
        let why = parse_keepalive_frame(frame).unwrap_err();
        assert!(why.ends_with(FRAME_HINT), "{frame:?}: {why}");
    }
    assert!(FRAME_HINT.contains(r#"like "event: heartbeat\ndata: {\"timestamp\": {now_ms}}\n\n""#));
    assert_eq!(
        Raw::from_cli(Kind::Frame, r": a\n\n".to_owned()),
        Raw::One(": a\n\n".to_owned())
    );
    assert_eq!(
        Raw::from_cli(Kind::Text, r"a\n".to_owned()),
        Raw::One(r"a\n".to_owned())
    );
}

#[test]
fn bools_numbers_addrs() {
    assert_eq!(parse_bool("true"), Ok(true));
    assert_eq!(parse_bool("false"), Ok(false));
    assert!(parse_bool("yes").is_err());
    assert_eq!(parse_number::<u32>("5", 1, 10), Ok(5));
    assert!(parse_number::<u32>("0", 1, 10).is_err());
    assert!(parse_number::<u32>("11", 1, 10).is_err());
    assert!(parse_number::<u32>("+5", 1, 10).is_err());
    assert!(parse_number::<u8>("300", 0, 1000).is_err());
    assert!(parse_socket_addr("127.0.0.1:8080").is_ok());
    assert!(parse_socket_addr("[::1]:8080").is_ok());
    assert!(parse_socket_addr("localhost:8080").is_err());
    assert!(parse_socket_addr("127.0.0.1").is_err());
}

#[test]
fn upstream_urls() {
    let u = parse_upstream_url("https://API.openai.com/v1/").unwrap();
    assert_eq!(
        (u.tls, u.host.as_str(), u.port),
        (true, "api.openai.com", 443)
    );
    assert_eq!(u.base_path, "/v1");
    let u = parse_upstream_url("http://10.0.0.1:8000").unwrap();
    assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 8000, ""));
    let u = parse_upstream_url("http://[::1]:9000/a/b").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
    assert_eq!(format_upstream_url(&u), "http://[::1]:9000/a/b");
    assert_eq!(parse_upstream_url("http://[fe80::1]").unwrap().port, 80);
    let bad = [
        "ftp://x",
        "api.openai.com",
        "https://",
        "https://:443",
        "https://u:p@host",
        "https://host/v1?x=1",
        "https://host#f",
        "https://host:0",
        "https://host:70000",
        "https://host:",
        "https://::1/",
        "https://[::1",
        "https://[nope]:80",
        "https://ho st",
        "https://host/a b",
        "https://[::1]x",
        "https://host:+80",
        "https://h!st",
        "api.openai.com:443",
    ];
    for s in bad {
        assert!(parse_upstream_url(s).is_err(), "{s:?} accepted");
    }
    let why = |s: &str| parse_upstream_url(s).unwrap_err();
    assert!(why("https://host#f").starts_with("query and fragment"));
    assert!(why("https://u@host").starts_with("user info"));
    assert!(why("https://host:70000").starts_with("bad port \"70000\""));
    assert!(why("https://[nope]").starts_with("bad IPv6 address \"nope\""));
    assert!(why("https://:443").starts_with("missing or bad host"));
    assert!(why("https://ho st").starts_with("spaces and control"));
    assert_eq!(why("ftp://x"), URL_HINT);
    let u = parse_upstream_url("HTTPS://Host:8443/A/b/").unwrap();
    assert_eq!(format_upstream_url(&u), "https://host:8443/A/b");
}

#[test]
fn prefixes_names_enums() {
    assert_eq!(parse_route_prefix("/"), Ok("/".to_owned()));
    assert_eq!(parse_route_prefix("/v1/"), Ok("/v1".to_owned()));
    assert!(parse_route_prefix("v1").is_err());
    assert!(parse_route_prefix("/v1?x").is_err());
    assert_eq!(
        parse_server_name("Relay.Example"),
        Ok("relay.example".to_owned())
    );
    assert!(parse_server_name("").is_err());
    assert_eq!(parse_root_store("none"), Ok(RootStore::None));
    assert_eq!(
        parse_root_store("all"),
        Err("expected one of webpki, native, both, none".to_owned())
    );
    assert_eq!(parse_protocol("http2"), Ok(UpstreamProtocol::Http2));
    assert_eq!(parse_dialect("openai"), Ok(DialectSetting::OpenAi));
    assert!(parse_dialect("OpenAI").is_err());
    assert_eq!(dialect_name(DialectSetting::Anthropic), "anthropic");
    assert_eq!(protocol_name(UpstreamProtocol::Http1), "http1");
    assert!(parse_log_level(" ").is_err());
}

#[test]
fn files_and_toml_strings() {
    let path = std::env::temp_dir().join(format!("sse-edge-value-{}", std::process::id()));
    std::fs::write(&path, "x").unwrap();
    assert!(parse_readable_file(path.to_str().unwrap()).is_ok());
    std::fs::remove_file(&path).unwrap();
    assert!(parse_readable_file(path.to_str().unwrap()).is_err());
    assert!(parse_readable_file(std::env::temp_dir().to_str().unwrap()).is_err());
    assert_eq!(toml_string("a\"b\\c\n\t"), r#""a\"b\\c\n\u0009""#);
}

#[test]
fn raw_values() {
    let one = |s: &str| Raw::One(s.to_owned());
    let t = |src: &str| src.parse::<toml::Table>().unwrap().remove("v").unwrap();
    assert_eq!(
        Raw::from_toml(Kind::Bool, &t("v = true")),
        Some(one("true"))
    );
    assert_eq!(Raw::from_toml(Kind::Bool, &t("v = \"true\"")), None);
    assert_eq!(
        Raw::from_toml(Kind::Size, &t("v = 1024")),
        Some(one("1024"))
    );
    assert_eq!(
        Raw::from_toml(Kind::Size, &t("v = \"1KiB\"")),
        Some(one("1KiB"))
    );
    assert_eq!(Raw::from_toml(Kind::Duration, &t("v = 0")), Some(one("0")));
    assert_eq!(Raw::from_toml(Kind::Duration, &t("v = 5")), None);
    assert_eq!(Raw::from_toml(Kind::Text, &t("v = 1.5")), None);
    assert_eq!(Raw::from_toml(Kind::List, &t("v = [\"a\", 1]")), None);
    let list = Raw::from_toml(Kind::List, &t("v = [\"a\", \"b\"]")).unwrap();
    assert_eq!(list.to_toml(Kind::List), r#"["a", "b"]"#);
    assert_eq!(one(" a, ,b ").items(), ["a", "b"]);
    assert_eq!(one("").to_toml(Kind::List), "[]");
    assert_eq!(one("0100").to_toml(Kind::Int), "100");
    assert_eq!(
        one("18446744073709551615").to_toml(Kind::Size),
        "\"18446744073709551615\""
    );
    assert_eq!(one("15s").to_toml(Kind::Duration), "\"15s\"");
}
