use super::*;
use http::HeaderValue;

const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn digest_is_sha256_hex() {
    assert_eq!(hex(&digest(b"abc")), ABC);
}

#[test]
fn parses_digests_labels_and_comments() {
    let other = hex(&digest(b"other"));
    let text = format!(
        "# client keys\n\n  {} team-a # rotated 2025-01\r\n{other}\n\t# end\n",
        ABC.to_ascii_uppercase()
    );
    let set = KeySet::parse(text.into_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(&**set.label(&digest(b"abc")).unwrap(), "team-a");
    assert_eq!(&**set.label(&digest(b"other")).unwrap(), &other[..8]);
    assert!(set.label(&digest(b"nope")).is_none());
}

#[test]
fn refuses_bad_files_naming_the_line() {
    let cases = [
        (
            format!("{ABC}\nsk-live-123\n"),
            "line 2: expected a 64-digit hex",
        ),
        (
            format!("{}\n", &ABC[..63]),
            "line 1: expected a 64-digit hex",
        ),
        (
            format!("{}g\n", &ABC[..63]),
            "line 1: expected a 64-digit hex",
        ),
        (
            format!("{ABC} a b\n"),
            "line 1: expected `<digest> [label]`",
        ),
        (
            format!("{ABC} a\n{ABC} b\n"),
            "line 2: digest already given on line 1",
        ),
        ("# nothing\n\n".to_owned(), "no key digests"),
    ];
    for (text, want) in cases {
        let err = KeySet::parse(text.into_bytes()).unwrap_err();
        assert!(err.starts_with(want), "{err}");
        assert!(!err.contains("sk-live"), "{err}");
    }
    assert!(KeySet::parse(vec![0xff, 0xfe]).is_err());
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn keys(text: &str) -> Keys {
    let file = KeysFile {
        path: PathBuf::from("/nonexistent"),
        reload_interval: Duration::from_secs(10),
    };
    let set = KeySet::parse(text.as_bytes().to_vec()).unwrap();
    Keys::with_set(&file, Arc::from("r"), set)
}

#[test]
fn identifies_bearer_and_x_api_key() {
    let k = keys(&format!("{ABC} alice\n"));
    let ok = |h: &[(&'static str, &str)]| k.identify(&headers(h)).map(|(_, l)| l.to_string());
    assert_eq!(ok(&[("authorization", "Bearer abc")]).unwrap(), "alice");
    assert_eq!(ok(&[("authorization", "bearer   abc ")]).unwrap(), "alice");
    assert_eq!(ok(&[("x-api-key", "abc")]).unwrap(), "alice");
    assert_eq!(
        ok(&[("x-api-key", "wrong"), ("authorization", "Bearer abc")]).unwrap(),
        "alice"
    );
    assert_eq!(ok(&[]).unwrap_err(), Refusal::Missing);
    assert_eq!(
        ok(&[("authorization", "Basic abc")]).unwrap_err(),
        Refusal::Missing
    );
    assert_eq!(
        ok(&[("authorization", "Bearer")]).unwrap_err(),
        Refusal::Missing
    );
    assert_eq!(ok(&[("x-api-key", "")]).unwrap_err(), Refusal::Missing);
    assert_eq!(ok(&[("x-api-key", "abd")]).unwrap_err(), Refusal::Unknown);
}
