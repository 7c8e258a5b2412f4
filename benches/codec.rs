//! The body codec against its floor (copying the body once) and against the naive way (parse into a
//! `serde_json::Value`, remove the member, serialize), on a ~1 KB chat request, a ~32 KB conversation
//! and a ~1 MB request carrying an image, each with the `requesty` member first, last and absent.
//!
//! After criterion's report it prints ratios measured again in the same process, since ratios within
//! one run are what stays meaningful on a noisy machine.

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput};
use requesty_metadata::{codec, Limits, RequestMetadata};
use serde::de::IgnoredAny;
use serde_json::Value;
use std::hint::black_box;
use std::time::Instant;

/// The member of the sample request in `tests/data/openai-chat-request.json`.
const MEMBER: &str = r#""requesty":{"tags":["product-content","e-commerce"],"user_id":"merchant_5678","trace_id":"workflow_product_launch_123","extra":{"country":"usa","prompt_title":"product description","department":"marketing","product_category":"kitchen_appliances"}}"#;

#[derive(Clone, Copy, PartialEq)]
enum Place {
    First,
    Last,
    Absent,
}

impl Place {
    const ALL: [Place; 3] = [Place::First, Place::Last, Place::Absent];

    fn name(self) -> &'static str {
        match self {
            Place::First => "member-first",
            Place::Last => "member-last",
            Place::Absent => "absent",
        }
    }
}

/// A chat completion request with `messages` (a JSON array) and the member where asked.
fn request(messages: &str, place: Place) -> Bytes {
    let mut members = vec![
        r#""model":"openai/gpt-4o""#.to_owned(),
        format!(r#""messages":{messages}"#),
        r#""temperature":0.7"#.to_owned(),
        r#""stream":true"#.to_owned(),
        r#""stream_options":{"include_usage":true}"#.to_owned(),
    ];
    match place {
        Place::First => members.insert(0, MEMBER.to_owned()),
        Place::Last => members.push(MEMBER.to_owned()),
        Place::Absent => {}
    }
    Bytes::from(format!("{{{}}}", members.join(",")))
}

/// ~1 KB: a system and a user message, like the sample request.
fn small_messages() -> String {
    let ask = "Generate a product description for a coffee maker with a thermal carafe, a programmable \
               timer, a strength selector and a permanent filter. Keep it under 120 words, use a warm \
               tone, mention that it brews 12 cups, that the carafe keeps coffee hot for four hours \
               without a hot plate, and that the filter basket and carafe lid are dishwasher safe. End \
               with a short call to action. Avoid superlatives and claims we cannot back up; no emoji. \
               Write it for an online store listing in the kitchen appliances category, US English.";
    format!(
        r#"[{{"role":"system","content":"You write product copy."}},{{"role":"user","content":"{ask}"}}]"#
    )
}

/// ~32 KB: a long conversation of short messages with escapes.
fn conversation_messages() -> String {
    let mut items = vec![
        r#"{"role":"system","content":"You are a helpful assistant.\nAnswer briefly."}"#.to_owned(),
    ];
    let mut i = 0;
    while items.iter().map(String::len).sum::<usize>() < 31 * 1024 {
        let (role, content) = if i % 2 == 0 {
            (
                "user",
                format!(r#"Step {i}: what about the \"caf\u00e9\" order #{i}?\nPlease check."#),
            )
        } else {
            (
                "assistant",
                format!(
                    r#"Order #{i} is ready.\n- item: cr\u00e8me br\u00fbl\u00e9e\n- note: \"no sugar\""#
                ),
            )
        };
        items.push(format!(r#"{{"role":"{role}","content":"{content}"}}"#));
        i += 1;
    }
    format!("[{}]", items.join(","))
}

/// ~1 MB: one user message with a text part and a base64 PNG data URL.
fn image_messages() -> String {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let raw: Vec<u8> = (0..780_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    format!(
        r#"[{{"role":"user","content":[{{"type":"text","text":"What is in this picture?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{}"}}}}]}}]"#,
        base64(&raw)
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Case {
    size: &'static str,
    place: Place,
    body: Bytes,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (size, messages) in [
        ("1KB", small_messages()),
        ("32KB", conversation_messages()),
        ("1MB", image_messages()),
    ] {
        for place in Place::ALL {
            let body = request(&messages, place);
            debug_assert!(serde_json::from_slice::<Value>(&body).is_ok());
            cases.push(Case { size, place, body });
        }
    }
    cases
}

fn metadata() -> RequestMetadata {
    let member = &MEMBER[MEMBER.find('{').unwrap_or(0)..];
    serde_json::from_str(member).unwrap_or_default()
}

/// The sample's metadata built from text already at hand, the way a parser must build its result:
/// every string copied, every `extra` entry inserted. No parser returning owned metadata is faster.
fn build(meta: &RequestMetadata) -> RequestMetadata {
    let mut built = RequestMetadata::new();
    for tag in &meta.tags {
        built.tags.push(tag.as_str().to_owned());
    }
    built.user_id = meta.user_id.as_deref().map(str::to_owned);
    built.trace_id = meta.trace_id.as_deref().map(str::to_owned);
    for (key, value) in &meta.extra {
        built.extra.insert(key.as_str().to_owned(), value.clone());
    }
    built
}

// ---- the operations, shared by criterion and the ratio table --------------------------------------

fn copy(body: &Bytes) -> Bytes {
    Bytes::copy_from_slice(body)
}

/// A unique buffer, as the server layer's collector hands over.
fn unique(body: &Bytes) -> Bytes {
    Bytes::from(body.to_vec())
}

/// A buffer with the headroom the server layer's collector allocates.
fn with_headroom(body: &Bytes) -> BytesMut {
    let mut buf = BytesMut::with_capacity(body.len() + 512);
    buf.extend_from_slice(body);
    buf
}

fn extract(body: Bytes) -> (Bytes, codec::Scan) {
    codec::extract(body, &Limits::default()).expect("valid metadata")
}

fn naive(body: &Bytes) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).expect("valid JSON");
    if let Some(map) = value.as_object_mut() {
        map.remove("requesty");
    }
    serde_json::to_vec(&value).expect("serializable")
}

fn validate(body: &Bytes) -> IgnoredAny {
    serde_json::from_slice(body).expect("valid JSON")
}

fn inject_in_place(mut buf: BytesMut, meta: &RequestMetadata) -> BytesMut {
    codec::inject_in_place(&mut buf, meta, &Limits::default()).expect("an object");
    buf
}

fn inject(mut body: Bytes, meta: &RequestMetadata) -> Bytes {
    codec::inject(&mut body, meta, &Limits::default()).expect("an object");
    body
}

/// What a gateway without this crate does to add metadata: parse, set or merge the member, serialize.
fn naive_inject(body: &Bytes, meta: &RequestMetadata) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).expect("valid JSON");
    if let Some(map) = value.as_object_mut() {
        let mut merged = meta.clone();
        if let Some(existing) = map.get("requesty") {
            if let Ok(existing) = serde_json::from_value::<RequestMetadata>(existing.clone()) {
                merged.merge(existing);
            }
        }
        map.insert(
            "requesty".into(),
            serde_json::to_value(merged).expect("serializable"),
        );
    }
    serde_json::to_vec(&value).expect("serializable")
}

fn batch_size(body: &Bytes) -> BatchSize {
    if body.len() > 256 * 1024 {
        BatchSize::LargeInput
    } else {
        BatchSize::SmallInput
    }
}

fn bench(c: &mut Criterion, cases: &[Case]) {
    let meta = metadata();
    for size in ["1KB", "32KB", "1MB"] {
        let mut group = c.benchmark_group(size);
        if size == "1MB" {
            group.sample_size(20);
        }
        for case in cases.iter().filter(|c| c.size == size) {
            let body = &case.body;
            let batch = batch_size(body);
            let place = case.place.name();
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(format!("copy/{place}"), |b| {
                b.iter_batched(|| (), |()| copy(black_box(body)), batch)
            });
            group.bench_function(format!("extract/{place}"), |b| {
                b.iter_batched(|| unique(body), extract, batch)
            });
            group.bench_function(format!("naive/{place}"), |b| {
                b.iter_batched(|| (), |()| naive(black_box(body)), batch)
            });
            group.bench_function(format!("validate/{place}"), |b| {
                b.iter(|| validate(black_box(body)))
            });
            group.bench_function(format!("inject-in-place/{place}"), |b| {
                b.iter_batched(
                    || with_headroom(body),
                    |buf| inject_in_place(buf, &meta),
                    batch,
                )
            });
            group.bench_function(format!("inject-bytes/{place}"), |b| {
                b.iter_batched(|| unique(body), |body| inject(body, &meta), batch)
            });
            group.bench_function(format!("inject-naive/{place}"), |b| {
                b.iter_batched(|| (), |()| naive_inject(black_box(body), &meta), batch)
            });
        }
        group.finish();
    }
}

// ---- the ratio table -----------------------------------------------------------------------------

/// Median nanoseconds of one `routine` call on an input from `setup`; inputs are made and outputs
/// dropped outside the timed part, `batch` calls per sample.
fn median_ns<I, O>(
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
    batch: usize,
    samples: usize,
) -> f64 {
    let mut times = Vec::with_capacity(samples);
    let mut outputs = Vec::with_capacity(batch);
    for _ in 0..samples {
        let inputs: Vec<I> = (0..batch).map(|_| setup()).collect();
        let start = Instant::now();
        for input in inputs {
            outputs.push(routine(black_box(input)));
        }
        times.push(start.elapsed().as_nanos() as f64 / batch as f64);
        black_box(&outputs);
        outputs.clear();
    }
    times.sort_by(f64::total_cmp);
    times[samples / 2]
}

struct Row {
    copy: f64,
    extract: f64,
    naive: f64,
    validate: f64,
    /// In place, into a plain unique `Bytes`, and the naive parse-and-serialize.
    inject: (f64, f64, f64),
}

fn measure(case: &Case, meta: &RequestMetadata) -> Row {
    let body = &case.body;
    // About 64 KB of input per sample, at least one body.
    let batch = (64 * 1024 / body.len()).max(1);
    let samples = if body.len() > 256 * 1024 { 101 } else { 201 };
    Row {
        copy: median_ns(|| (), |()| copy(body), batch, samples),
        extract: median_ns(|| unique(body), extract, batch, samples),
        naive: median_ns(|| (), |()| naive(body), batch, samples),
        validate: median_ns(|| (), |()| validate(body), batch, samples),
        inject: (
            median_ns(
                || with_headroom(body),
                |b| inject_in_place(b, meta),
                batch,
                samples,
            ),
            median_ns(|| unique(body), |b| inject(b, meta), batch, samples),
            median_ns(|| (), |()| naive_inject(body, meta), batch, samples),
        ),
    }
}

/// [`measure`] three times, each figure the median of its three: one slow stretch of this noisy
/// machine then moves no figure.
fn steady(case: &Case, meta: &RequestMetadata) -> Row {
    let rows: Vec<Row> = (0..3).map(|_| measure(case, meta)).collect();
    let mid = |f: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[1]
    };
    Row {
        copy: mid(|r| r.copy),
        extract: mid(|r| r.extract),
        naive: mid(|r| r.naive),
        validate: mid(|r| r.validate),
        inject: (
            mid(|r| r.inject.0),
            mid(|r| r.inject.1),
            mid(|r| r.inject.2),
        ),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn print_ratios(cases: &[Case]) {
    let meta = metadata();
    println!(
        "\nratios measured in this run (each figure the median of three medians, ns per body):"
    );
    let mut targets = Vec::new();
    let mut owned = None;
    for case in cases {
        let r = steady(case, &meta);
        let name = format!("{} {}", case.size, case.place.name());
        println!(
            "{name:<20} ({:>7} B): copy {:>9.0} ns, extract {:>9.0} ns, naive {:>10.0} ns, validate {:>9.0} ns | extract/copy = {:.2}x, naive/extract = {:.1}x, validate/extract = {:.1}x",
            case.body.len(),
            r.copy,
            r.extract,
            r.naive,
            r.validate,
            r.extract / r.copy,
            r.naive / r.extract,
            r.validate / r.extract,
        );
        let (in_place, bytes, naive_inject) = r.inject;
        println!(
            "{name:<20} inject: in place (+512 B headroom) {in_place:.0} ns = {:.2}x copy, into a plain unique Bytes {bytes:.0} ns = {:.2}x copy, naive {naive_inject:.0} ns = {:.1}x slower than in place",
            in_place / r.copy,
            bytes / r.copy,
            naive_inject / in_place,
        );
        let (copy_x, naive_x, validate_x) = (
            r.extract / r.copy,
            r.naive / r.extract,
            r.validate / r.extract,
        );
        match (case.size, case.place) {
            ("1MB", Place::Last | Place::Absent) => {
                targets.push(format!(
                    "{name}: extract/copy {copy_x:.2}x <= 0.7x {}",
                    verdict(copy_x <= 0.7)
                ));
                targets.push(format!(
                    "{name}: naive/extract {naive_x:.1}x >= 50x {}",
                    verdict(naive_x >= 50.0)
                ));
            }
            ("32KB", _) => {
                targets.push(format!(
                    "{name}: extract/copy {copy_x:.2}x <= 10x {}",
                    verdict(copy_x <= 10.0)
                ));
                targets.push(format!(
                    "{name}: validate/extract {validate_x:.2}x > 1x {}",
                    verdict(validate_x > 1.0)
                ));
            }
            ("1KB", Place::Last) => {
                targets.push(format!(
                    "{name}: naive/extract {naive_x:.1}x >= 5x {}",
                    verdict(naive_x >= 5.0)
                ));
                // What the owned result costs by itself, built as a parser must build it.
                owned = Some((r.naive, median_ns(|| (), |()| build(&meta), 64, 201)));
            }
            ("1KB", Place::Absent) => {
                if let Some((naive, owned)) = owned {
                    targets.push(format!(
                        "1KB member-last: building the owned RequestMetadata alone takes {owned:.0} ns; the scan of the body without the member {:.0} ns; with a member parser that cost nothing beyond building its result, extract would be {:.0} ns and naive/extract {:.1}x",
                        r.extract,
                        r.extract + owned,
                        naive / (r.extract + owned)
                    ));
                }
            }
            _ => {}
        }
        if let ("1MB", Place::Absent) = (case.size, case.place) {
            let x = in_place / r.copy;
            targets.push(format!(
                "{name}: inject(in place)/copy {x:.2}x <= 1.0x {}",
                verdict(x <= 1.0)
            ));
        }
    }
    println!("\ntargets:");
    for t in targets {
        println!("  {t}");
    }
}

fn main() {
    let cases = cases();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &cases);
    c.final_summary();
    // Only under `cargo bench`: `cargo test --benches` runs each benchmark once as a smoke test.
    if std::env::args().any(|a| a == "--bench") {
        print_ratios(&cases);
    }
}
