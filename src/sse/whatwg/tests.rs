use super::*;

fn ev(t: &str, d: &str, id: &str) -> Dispatched {
    Dispatched {
        event_type: t.into(),
        data: d.into(),
        last_event_id: id.into(),
    }
}

#[test]
fn spec_examples() {
    // The four examples of the standard's "event stream interpretation".
    let s = b"data: YHOO\ndata: +2\ndata: 10\n\n";
    assert_eq!(parse(s), [ev("message", "YHOO\n+2\n10", "")]);
    let s = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n";
    assert_eq!(
        parse(s),
        [
            ev("message", "first event", "1"),
            ev("message", "second event", "")
        ]
    );
    let s = b"data\n\ndata\ndata\n\ndata:";
    assert_eq!(parse(s), [ev("message", "", ""), ev("message", "\n", "")]);
    let s = b"data:test\n\ndata: test\n\n";
    assert_eq!(
        parse(s),
        [ev("message", "test", ""), ev("message", "test", "")]
    );
}

#[test]
fn line_ends_and_bom() {
    let want = [ev("message", "a", ""), ev("message", "b", "")];
    for s in [
        &b"data:a\r\rdata:b\r\n\r\n"[..],
        b"\xEF\xBB\xBFdata:a\n\ndata:b\r\r",
    ] {
        assert_eq!(parse(s), want);
    }
    // A second BOM is content: it poisons the field name.
    assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata:a\n\n"), []);
    // An incomplete BOM is content too (decoded as U+FFFD).
    assert_eq!(
        parse(b"\xEF\xBBdata:a\n\ndata:b\n\n"),
        [ev("message", "b", "")]
    );
    // CR LF split over feeds is still one line end.
    let mut p = Parser::new();
    for part in [&b"data:a\r"[..], b"\n", b"\r", b"\n"] {
        p.feed(part);
    }
    assert_eq!(p.events(), [ev("message", "a", "")]);
}

#[test]
fn fields() {
    let s = b"event: add\ndata: 1\nretry: 250\nid: 9\nfoo: bar\nEvent: x\n\n";
    let mut p = Parser::new();
    p.feed(s);
    assert_eq!(p.events(), [ev("add", "1", "9")]);
    assert_eq!(p.retry(), Some(250));
    p.feed(b"retry: 1s\nretry\n\nevent: gone\n\ndata: after\n\n");
    assert_eq!(p.retry(), Some(250));
    // The type is reset by a dispatch without data; the id sticks.
    assert_eq!(p.events()[1], ev("message", "after", "9"));
}

#[test]
fn last_event_id_semantics() {
    let s =
        b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\nid\ndata: d\n\nid: x\0y\ndata: e\n\n";
    let ids: Vec<_> = parse(s).into_iter().map(|e| e.last_event_id).collect();
    assert_eq!(ids, ["1", "1", "2", "", ""]);
    // The id of an unterminated event is never set.
    let mut p = Parser::new();
    p.feed(b"data: a\n\nid: 5\ndata: b\n");
    assert_eq!(p.events(), [ev("message", "a", "")]);
}

#[test]
fn positions() {
    let mut p = Parser::new();
    let steps: [(&[u8], Position); 9] = [
        (b"", Position::EventBoundary),
        (b"\xEF\xBB", Position::EventBoundary),
        (b"\xBF", Position::EventBoundary),
        (b"da", Position::InLine),
        (b"ta\r", Position::AfterCr),
        (b"\n", Position::LineStart),
        (b":c\n", Position::LineStart),
        (b"\r", Position::AfterCr),
        (b"\n", Position::EventBoundary),
    ];
    for (bytes, want) in steps {
        p.feed(bytes);
        assert_eq!(p.position(), want, "after {bytes:?}");
    }
}
