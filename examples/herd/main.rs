//! Fleet herd simulation: what the CSR API sees when a fleet of nodes rotates.
//!
//! N nodes (10,000 by default) start with no certificate within one second and run a rotation
//! policy on simulated time: certrotate's own [`certrotate::schedule::Policy`] (the code the
//! manager's rotation thread runs, not a copy of it) beside client-go's certificate manager,
//! modelled from its constants (see `sim.rs`). Seeded and deterministic; a few seconds in a
//! release build. Three scenarios, each for three fleets (certrotate with its default backoff, certrotate with
//! client-go's backoff, and the model of client-go):
//!
//! 1. **Outage**: the CSR API is down for the first hour, then back. Creates per second: the
//!    mean and the busiest second during the outage (after its first minute), the busiest
//!    second of the first minute after recovery, the busiest second anywhere after the first
//!    minute, and when the last node got its certificate.
//! 2. **Throttled recovery**: the same outage, then an API that admits 100 creates per second
//!    and answers the others `429` with `Retry-After: 120` (the apiserver's priority and
//!    fairness). certrotate's backoff waits at least the `Retry-After`; client-go's manager
//!    does not read it.
//! 3. **Steady state**: one-month certificates over a simulated year: how the renewals of a
//!    fleet that bootstrapped in one second spread out, generation after generation.
//!
//! ```sh
//! cargo run --release --example herd
//! cargo run --release --example herd -- --nodes 50000 --seed 7
//! ```

mod sim;

use std::process::ExitCode;

use certrotate::schedule::Backoff;
use sim::{DAY, Fleet, HOUR, OutageFigures, Run, Scenario, quantile, simulate, window};

fn main() -> ExitCode {
    let mut nodes = 10_000usize;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref()) {
            ("--nodes", Some(v)) => v.parse().map(|n| nodes = n).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|s| seed = s).is_ok(),
            _ => false,
        };
        if !parsed || nodes == 0 {
            eprintln!("usage: herd [--nodes N (≥ 1)] [--seed S]");
            return ExitCode::from(2);
        }
    }
    println!("{nodes} nodes starting with no certificate within 1 s; seed {seed}");
    outage(nodes, seed);
    throttled(nodes, seed);
    steady(nodes, seed);
    ExitCode::SUCCESS
}

/// The fleets compared: certrotate's default policy, certrotate's policy with client-go's
/// backoff (which should come close to the next column, an independent model), and the model
/// of client-go's manager.
const FLEETS: [Fleet; 3] = [
    Fleet::Certrotate(Backoff::Spread),
    Fleet::Certrotate(Backoff::ClientGo),
    Fleet::ClientGo,
];

fn all(scenario: &Scenario) -> [(Fleet, Run); 3] {
    FLEETS.map(|f| (f, simulate(scenario, f)))
}

fn row(label: &str, values: [String; 3]) {
    println!(
        "  {label:<58} {:>14} {:>14} {:>14}",
        values[0], values[1], values[2]
    );
}

fn header(title: &str) {
    println!("\n{title}");
    row(
        "",
        ["certrotate".into(), "…ClientGo".into(), "client-go".into()],
    );
    row("", ["(Spread)".into(), "backoff".into(), "(model)".into()]);
}

fn last_certified(run: &Run) -> String {
    if run.first_certificate.iter().any(Option::is_none) {
        return "never (some)".into();
    }
    let last = run
        .first_certificate
        .iter()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b));
    format!("{last:.0} s")
}

/// The outage scenario's figures; each rate is creates per second.
pub fn outage(nodes: usize, seed: u64) {
    let scenario = Scenario::outage(nodes, seed);
    let runs = all(&scenario);
    header("1. The CSR API down for the first hour, then back (creates per second)");
    let figures = runs
        .each_ref()
        .map(|(_, r)| OutageFigures::of(r, &scenario));
    let f = |g: fn(&OutageFigures) -> String| figures.each_ref().map(g);
    row(
        "first minute: busiest second",
        f(|o| o.first_minute.to_string()),
    );
    row(
        "outage after its first minute: mean",
        f(|o| format!("{:.0}", o.mean)),
    );
    row(
        "outage after its first minute: busiest second",
        f(|o| format!("{} ({:.2}×)", o.outage_peak, o.outage_peak as f64 / o.mean)),
    );
    row(
        "first minute after recovery: busiest second",
        f(|o| {
            format!(
                "{} ({:.2}×)",
                o.recovery_peak,
                o.recovery_peak as f64 / o.mean
            )
        }),
    );
    row(
        "anywhere after the first minute: busiest second",
        f(|o| format!("{} ({:.2}×)", o.later_peak, o.later_peak as f64 / o.mean)),
    );
    row(
        "last node certified",
        runs.each_ref().map(|(_, r)| last_certified(r)),
    );
}

fn throttled(nodes: usize, seed: u64) {
    let scenario = Scenario::throttled(nodes, seed);
    let runs = all(&scenario);
    let (_, back) = scenario.outage;
    header(
        "2. The same outage, then 100 creates/s admitted, 429 + Retry-After: 120 s for the rest",
    );
    let after = |r: &Run| window(&r.creates, back, back + 600);
    row(
        "first 10 minutes after recovery: creates, mean per second",
        runs.each_ref()
            .map(|(_, r)| format!("{:.0}", after(r).mean)),
    );
    row(
        "first 10 minutes after recovery: busiest second",
        runs.each_ref().map(|(_, r)| after(r).peak.to_string()),
    );
    row(
        "creates answered 429",
        runs.each_ref().map(|(_, r)| r.throttled.to_string()),
    );
    row(
        "last node certified",
        runs.each_ref().map(|(_, r)| last_certified(r)),
    );
}

fn steady(nodes: usize, seed: u64) {
    let scenario = Scenario::steady(nodes, seed);
    let runs = all(&scenario);
    header("3. Steady state: 30-day certificates for a year (renewals)");
    let spread = |r: &Run, from_day: u64, to_day: u64| {
        let mut in_span: Vec<f64> = r
            .renewals
            .iter()
            .copied()
            .filter(|&t| (from_day * DAY) as f64 <= t && t < (to_day * DAY) as f64)
            .collect();
        let per_hour = hourly(&in_span, from_day, to_day);
        let width = (quantile(&mut in_span, 0.99) - quantile(&mut in_span, 0.01)) / DAY as f64;
        (per_hour, width)
    };
    for (label, from, to) in [
        ("first renewals (days 0–30)", 0, 30),
        ("days 30–60", 30, 60),
        ("days 300–365", 300, 365),
    ] {
        let figures = runs.each_ref().map(|(_, r)| spread(r, from, to));
        row(
            &format!("{label}: renewals per hour, busiest (mean)"),
            figures.map(|((peak, mean), _)| format!("{peak} ({mean:.1})")),
        );
    }
    let first = runs.each_ref().map(|(_, r)| spread(r, 0, 30).1);
    row(
        "first renewals: 1st–99th percentile span",
        first.map(|w| format!("{w:.1} days")),
    );
    row(
        "busiest second of the year: renewals",
        runs.each_ref()
            .map(|(_, r)| window(&r.creates, DAY, scenario.duration).peak.to_string()),
    );
}

/// The busiest hour's count and the mean per hour of `times` over days `[from, to)`.
fn hourly(times: &[f64], from_day: u64, to_day: u64) -> (u32, f64) {
    let hours = ((to_day - from_day) * 24) as usize;
    let mut counts = vec![0u32; hours];
    for &t in times {
        let k = ((t as u64 - from_day * DAY) / HOUR) as usize;
        if let Some(c) = counts.get_mut(k) {
            *c += 1;
        }
    }
    let peak = counts.iter().copied().max().unwrap_or(0);
    (peak, times.len() as f64 / hours as f64)
}
