//! Load test of the gateway demo with and without `RequestyMetadataLayer`, on loopback only.
//!
//! ```text
//! cargo build --release --example gateway
//! cargo run --release --example load -- [--quick] [--duration SECS] [--reps N] [--max-requests N]
//!                                       [--gateway PATH] [--proxy] [--pin] [--strict]
//! ```
//!
//! For each case (request body of 1 KB, 32 KB or 1 MB; streaming or not; 1, 16 or 128 requests in
//! flight) it starts `target/release/examples/gateway` twice on a free 127.0.0.1 port, once as is and
//! once with `--without-layer`, both answering from the mock provider without stream delays
//! (`--mock-delay-ms 0`), and drives each with a chat completion request carrying a `requesty`
//! member, for a fixed time or number of requests, whichever comes first. It reports throughput,
//! p50/p99 latency (from sending the request to the last byte of the response), the gateway's CPU
//! time per request and its peak resident memory (`VmHWM`), with the layer on vs. off, and checks
//! the target: at 1 KB and 128 in flight, throughput on ≥ 0.95× off and p99 on ≤ 1.1× off.
//!
//! With `--proxy` the gateway under test answers nothing itself: it forwards every request to a
//! second gateway (started once, without the layer, answering from its mock), the shape of a real
//! deployment. The figures are still the first gateway's.
//!
//! With `--pin` the gateway under test runs on CPU 0 alone (so its runtime has one worker) and this
//! generator, with the upstream gateway of `--proxy`, on the other CPUs. Unpinned, the two compete
//! for the same cores, and a lighter gateway leaves more CPU to the generator, which then sends
//! faster: the on/off ratios mix the layer's cost with the scheduler's choices. Pinned, the gateway's
//! throughput is set by its own CPU time per request. It needs `taskset` (util-linux) and at least
//! two CPUs.
//!
//! Every run stops by itself: at its deadline, at its request cap, or when a request takes longer
//! than 30 s. Each gateway is killed when its run ends. `--quick` runs a few cases in under a
//! minute; the full matrix (`benches/load.sh`) takes about five.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: load [--quick] [--duration SECS] [--reps N] [--max-requests N] [--gateway PATH] [--proxy]
            [--pin] [--strict]

  --quick            a few cases, for a check in under a minute (default: the full matrix)
  --duration SECS    measured time per run (default 3, quick 2), after a short warm-up
  --reps N           runs per case and mode, alternating which mode goes first (default 2,
                     quick 1); the target case always gets at least 5
  --max-requests N   most requests per run (default 200000)
  --gateway PATH     the gateway binary (default: target/release/examples/gateway next to this one)
  --proxy            the gateway under test forwards to a second gateway's mock (--upstream)
                     instead of answering from its own
  --pin              the gateway under test on CPU 0 alone, the load generator (and the upstream
                     of --proxy) on the other CPUs; needs taskset (util-linux) and 2+ CPUs
  --strict           exit with status 1 when the target is missed
";

/// Bodies of these sizes, in bytes.
const SIZES: [(usize, &str); 3] = [(1024, "1 KB"), (32 * 1024, "32 KB"), (1024 * 1024, "1 MB")];
const CONCURRENCY: [usize; 3] = [1, 16, 128];
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const WARM_UP: Duration = Duration::from_millis(300);

struct Args {
    quick: bool,
    duration: Duration,
    reps: usize,
    max_requests: u64,
    gateway: Option<PathBuf>,
    proxy: bool,
    pin: bool,
    strict: bool,
}

#[derive(Clone, Copy, PartialEq)]
struct Case {
    size: usize,
    label: &'static str,
    stream: bool,
    concurrency: usize,
}

impl Case {
    /// The case the target is stated for.
    fn is_target(&self) -> bool {
        self.size == 1024 && !self.stream && self.concurrency == 128
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Off,
    On,
}

/// One run of one case in one mode.
#[derive(Clone, Debug, Default)]
struct Run {
    requests: u64,
    errors: u64,
    throughput: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_request: Option<Duration>,
    peak_rss_kib: Option<u64>,
    /// The gateway's process id, to match the run with a profile.
    pid: u32,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("load: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let gateway = match find_gateway(args.gateway.clone()) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("load: {message}");
            return ExitCode::FAILURE;
        }
    };
    let gateway_cpu = if args.pin {
        match pin_self() {
            Ok(cpu) => Some(cpu),
            Err(message) => {
                eprintln!("load: --pin: {message}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    // Up for the whole run, so every case of both modes forwards to the same process.
    let upstream = if args.proxy {
        match Gateway::start(&gateway, Mode::Off, None, None) {
            Ok(upstream) => Some(upstream),
            Err(message) => {
                eprintln!("load: the upstream gateway: {message}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let upstream_url = upstream.as_ref().map(|u| format!("http://{}", u.addr));

    let cases = cases(args.quick);
    let started = Instant::now();
    let mut results: Vec<(Case, Run, Run)> = Vec::new();
    for case in &cases {
        let reps = if case.is_target() {
            args.reps.max(5)
        } else {
            args.reps
        };
        let body = chat_body(case.size, case.stream);
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            let order = if rep % 2 == 0 {
                [Mode::Off, Mode::On]
            } else {
                [Mode::On, Mode::Off]
            };
            for mode in order {
                let run = match runtime.block_on(run_once(
                    &gateway,
                    upstream_url.as_deref(),
                    gateway_cpu.as_deref(),
                    mode,
                    *case,
                    &body,
                    &args,
                )) {
                    Ok(run) => run,
                    Err(message) => {
                        eprintln!("load: {message}");
                        return ExitCode::FAILURE;
                    }
                };
                eprintln!(
                    "{:>5} stream={:<5} c={:<3} {:?} rep {}: {:.0} req/s, p50 {}, p99 {}, {} errors (gateway pid {})",
                    case.label,
                    case.stream,
                    case.concurrency,
                    mode,
                    rep + 1,
                    run.throughput,
                    ms(run.p50),
                    ms(run.p99),
                    run.errors,
                    run.pid,
                );
                match mode {
                    Mode::Off => off.push(run),
                    Mode::On => on.push(run),
                }
            }
        }
        results.push((*case, combine(&off), combine(&on)));
    }

    println!();
    let answering = if args.proxy {
        "forwarding to a second gateway's mock provider"
    } else {
        "with the mock provider"
    };
    println!(
        "Gateway demo {answering} (no stream delay), loopback, {} s per run after a {} ms warm-up; medians over runs; layer off vs. on.",
        args.duration.as_secs_f64(),
        WARM_UP.as_millis()
    );
    println!();
    println!("| body | stream | in flight | req/s off | req/s on | on/off | p50 ms off | p50 ms on | p99 ms off | p99 ms on | p99 on/off | CPU µs/req off | CPU µs/req on | peak RSS MiB off | peak RSS MiB on | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (case, off, on) in &results {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} |",
            case.label,
            if case.stream { "yes" } else { "no" },
            case.concurrency,
            off.throughput,
            on.throughput,
            on.throughput / off.throughput,
            ms(off.p50),
            ms(on.p50),
            ms(off.p99),
            ms(on.p99),
            ratio(on.p99, off.p99),
            micros(off.cpu_per_request),
            micros(on.cpu_per_request),
            mib(off.peak_rss_kib),
            mib(on.peak_rss_kib),
            off.errors + on.errors,
        );
    }
    println!();
    let mut missed = false;
    if let Some((_, off, on)) = results.iter().find(|(case, ..)| case.is_target()) {
        let throughput = on.throughput / off.throughput;
        let p99 = ratio(on.p99, off.p99);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        missed = throughput < 0.95 || p99 > 1.1;
        println!(
            "Target at 1 KB, 128 in flight: throughput on/off {throughput:.3} (≥ 0.95: {}), p99 on/off {p99:.3} (≤ 1.1: {}).",
            verdict(throughput >= 0.95),
            verdict(p99 <= 1.1)
        );
    }
    let errors: u64 = results.iter().map(|(_, a, b)| a.errors + b.errors).sum();
    println!(
        "{} cases, {} requests failed, {:.0} s in all.",
        results.len(),
        errors,
        started.elapsed().as_secs_f64()
    );
    if errors > 0 || (args.strict && missed) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut quick = false;
    let mut duration = None;
    let mut reps = None;
    let mut max_requests = 200_000;
    let mut gateway = None;
    let mut proxy = false;
    let mut pin = false;
    let mut strict = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "--strict" => strict = true,
            "--proxy" => proxy = true,
            "--pin" => pin = true,
            "--duration" => {
                let secs: f64 = value(&arg)?
                    .parse()
                    .map_err(|_| "--duration takes seconds")?;
                if !(0.1..=60.0).contains(&secs) {
                    return Err("--duration is between 0.1 and 60 seconds".into());
                }
                duration = Some(Duration::from_secs_f64(secs));
            }
            "--reps" => {
                let n: usize = value(&arg)?.parse().map_err(|_| "--reps takes a number")?;
                reps = Some(n.clamp(1, 20));
            }
            "--max-requests" => {
                max_requests = value(&arg)?
                    .parse()
                    .map_err(|_| "--max-requests takes a number")?;
            }
            "--gateway" => gateway = Some(PathBuf::from(value(&arg)?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(Args {
        quick,
        duration: duration.unwrap_or(Duration::from_secs(if quick { 2 } else { 3 })),
        reps: reps.unwrap_or(if quick { 1 } else { 2 }),
        max_requests,
        gateway,
        proxy,
        pin,
        strict,
    }))
}

/// The gateway binary: given, or built next to this one.
fn find_gateway(given: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program's path: {e}"))?
            .with_file_name("gateway"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no gateway binary at {}; build it first with `cargo build --release --example gateway` \
             (benches/load.sh does both)",
            path.display()
        ))
    }
}

fn cases(quick: bool) -> Vec<Case> {
    let case = |(size, label): (usize, &'static str), stream, concurrency| Case {
        size,
        label,
        stream,
        concurrency,
    };
    if quick {
        return vec![
            case(SIZES[0], false, 128),
            case(SIZES[0], false, 1),
            case(SIZES[0], true, 16),
            case(SIZES[1], false, 16),
            case(SIZES[2], false, 16),
        ];
    }
    let mut all = Vec::new();
    for size in SIZES {
        for stream in [false, true] {
            for concurrency in CONCURRENCY {
                all.push(case(size, stream, concurrency));
            }
        }
    }
    all
}

/// A chat completion request of exactly `size` bytes, with a `requesty` member.
fn chat_body(size: usize, stream: bool) -> Bytes {
    let head = format!(
        r#"{{"model":"openai/gpt-4o","stream":{stream},"stream_options":{{"include_usage":true}},"temperature":0.7,"messages":["#
    );
    let tail = r#"],"requesty":{"tags":["load-test","workflow-a"],"user_id":"user_1234","trace_id":"session_abc123","extra":{"country":"canada","tier":"premium"}}}"#;
    let mut body = head;
    let mut turn = 0;
    // Whole turns while there is room, then one last message padded to the exact size.
    let last_open = r#"{"role":"user","content":""#;
    let last_close = r#""}"#;
    loop {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let message = format!(
            r#"{{"role":"{role}","content":"Turn {turn}: caf\u00e9 \"quoted\"\nline two, price 1.0e0"}},"#
        );
        if body.len() + message.len() + last_open.len() + last_close.len() + tail.len() > size {
            break;
        }
        body.push_str(&message);
        turn += 1;
    }
    body.push_str(last_open);
    let pad = size.saturating_sub(body.len() + last_close.len() + tail.len());
    body.extend(std::iter::repeat_n('x', pad));
    body.push_str(last_close);
    body.push_str(tail);
    Bytes::from(body)
}

/// The gateway process; killed when dropped, so no run leaves one behind.
struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Gateway {
    /// Starts the gateway at `path`, answering from its mock or, given `upstream`, forwarding there;
    /// given `cpu`, it runs on that CPU alone (see [`pin_self`]).
    fn start(
        path: &PathBuf,
        mode: Mode,
        upstream: Option<&str>,
        cpu: Option<&str>,
    ) -> Result<Self, String> {
        // A free port: bound and released here, then taken by the child (retried if it lost it).
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free loopback port: {e}"))?
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut command = if let Some(cpu) = cpu {
                let mut taskset = Command::new("taskset");
                taskset.arg("--cpu-list").arg(cpu).arg(path);
                taskset
            } else {
                Command::new(path)
            };
            command
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--mock-delay-ms")
                .arg("0")
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if mode == Mode::Off {
                command.arg("--without-layer");
            }
            if let Some(url) = upstream {
                command.arg("--upstream").arg(url);
            }
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
            let mut gateway = Gateway { child, addr };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = gateway.child.try_wait() {
                    break; // exited: the port was taken after all; try another
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                    return Ok(gateway);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(format!("{} did not start listening", path.display()))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Splits the CPUs this process may use: the first for the gateway under test, the others for this
/// process, every thread of it and whatever it starts later (the upstream of `--proxy`). Returns the
/// gateway's CPU.
fn pin_self() -> Result<String, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let allowed = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .ok_or("/proc/self/status has no Cpus_allowed_list")?;
    let cpus =
        cpu_list(allowed.trim()).ok_or_else(|| format!("cannot read CPU list {allowed:?}"))?;
    let [gateway, rest @ ..] = cpus.as_slice() else {
        return Err("no CPU is allowed".into());
    };
    if rest.is_empty() {
        return Err(format!(
            "needs at least 2 CPUs, this process may use CPU {gateway} only"
        ));
    }
    let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
    let status = Command::new("taskset")
        .arg("--all-tasks")
        .arg("--pid")
        .arg("--cpu-list")
        .arg(rest.join(","))
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run taskset (util-linux): {e}"))?;
    if !status.success() {
        return Err(format!("taskset failed ({status})"));
    }
    Ok(gateway.to_string())
}

/// The CPUs of a list such as `0-3,8,10-11`.
fn cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (first, last): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let cpu = part.parse().ok()?;
                (cpu, cpu)
            }
        };
        cpus.extend(first..=last);
    }
    Some(cpus)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Starts a gateway, warms it up, measures, and stops it.
async fn run_once(
    path: &PathBuf,
    upstream: Option<&str>,
    gateway_cpu: Option<&str>,
    mode: Mode,
    case: Case,
    body: &Bytes,
    args: &Args,
) -> Result<Run, String> {
    let gateway = Gateway::start(path, mode, upstream, gateway_cpu)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(case.concurrency)
        .build(connector);
    let uri: http::Uri = format!("http://{}/v1/chat/completions", gateway.addr)
        .parse()
        .expect("a valid URI");
    let expect_member_seen = mode == Mode::Off;

    let warm_up = (case.concurrency as u64 * 4).max(20);
    drive(
        &client,
        &uri,
        body,
        case,
        warm_up,
        WARM_UP,
        expect_member_seen,
    )
    .await;

    let ticks_before = cpu_ticks(gateway.pid());
    let started = Instant::now();
    let outcome = drive(
        &client,
        &uri,
        body,
        case,
        args.max_requests,
        args.duration,
        expect_member_seen,
    )
    .await;
    let elapsed = started.elapsed();
    let ticks_after = cpu_ticks(gateway.pid());
    let peak_rss_kib = peak_rss_kib(gateway.pid());
    let pid = gateway.pid();
    drop(client);
    drop(gateway);

    let mut latencies = outcome.latencies;
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    let cpu_per_request = match (ticks_before, ticks_after) {
        (Some(before), Some(after)) if requests > 0 => {
            Some(Duration::from_micros((after - before) * 10_000 / requests))
        }
        _ => None,
    };
    Ok(Run {
        requests,
        errors: outcome.errors,
        throughput: requests as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        cpu_per_request,
        peak_rss_kib,
        pid,
    })
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
}

/// `case.concurrency` workers sending requests one after another until `limit` requests were
/// started or `duration` has passed.
async fn drive(
    client: &HttpClient,
    uri: &http::Uri,
    body: &Bytes,
    case: Case,
    limit: u64,
    duration: Duration,
    expect_member_seen: bool,
) -> Outcome {
    let started = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..case.concurrency)
        .map(|_| {
            let (client, uri, body, started) =
                (client.clone(), uri.clone(), body.clone(), started.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < limit {
                    let begin = Instant::now();
                    let exchange = one_request(&client, &uri, &body, case.stream);
                    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                        Ok(Ok(saw_member)) if saw_member == expect_member_seen => {
                            latencies.push(begin.elapsed())
                        }
                        Ok(Ok(_)) => {
                            eprintln!("the provider saw the wrong body for this mode");
                            errors += 1;
                        }
                        Ok(Err(message)) => {
                            if errors == 0 {
                                eprintln!("request failed: {message}");
                            }
                            errors += 1;
                        }
                        Err(_) => {
                            eprintln!("a request took longer than {REQUEST_TIMEOUT:?}; stopping");
                            errors += 1;
                            break;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut outcome = Outcome {
        latencies: Vec::new(),
        errors: 0,
    };
    for worker in workers {
        let (latencies, errors) = worker.await.expect("a load worker panicked");
        outcome.latencies.extend(latencies);
        outcome.errors += errors;
    }
    outcome
}

/// One chat completion; returns whether the mock saw the `requesty` member.
async fn one_request(
    client: &HttpClient,
    uri: &http::Uri,
    body: &Bytes,
    stream: bool,
) -> Result<bool, String> {
    let request = http::Request::post(uri.clone())
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let saw_member = response
        .headers()
        .get("x-mock-saw-requesty")
        .is_some_and(|v| v == "true");
    let mut body = response.into_body();
    let mut tail = Vec::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            len += data.len();
            tail.extend_from_slice(&data[data.len().saturating_sub(16)..]);
            let keep = tail.len().saturating_sub(16);
            tail.drain(..keep);
        }
    }
    if status != http::StatusCode::OK {
        return Err(format!("status {status}"));
    }
    let complete = if stream {
        tail.ends_with(b"data: [DONE]\n\n")
    } else {
        len > 0 && tail.ends_with(b"}")
    };
    if !complete {
        return Err(format!("incomplete response body ({len} bytes)"));
    }
    Ok(saw_member)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Medians over runs (peak memory: the highest).
fn combine(runs: &[Run]) -> Run {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            0.0
        } else if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        }
    };
    let secs = |f: fn(&Run) -> Duration| {
        Duration::from_secs_f64(median(runs.iter().map(|r| f(r).as_secs_f64()).collect()))
    };
    let cpu: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.cpu_per_request.map(|d| d.as_secs_f64()))
        .collect();
    Run {
        requests: runs.iter().map(|r| r.requests).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
        throughput: median(runs.iter().map(|r| r.throughput).collect()),
        p50: secs(|r| r.p50),
        p99: secs(|r| r.p99),
        cpu_per_request: (!cpu.is_empty()).then(|| Duration::from_secs_f64(median(cpu))),
        peak_rss_kib: runs.iter().filter_map(|r| r.peak_rss_kib).max(),
        pid: runs.last().map_or(0, |r| r.pid),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn micros(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e6))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
