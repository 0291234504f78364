//! The fleet herd simulation (`examples/herd`) judged on its goals: 10,000 nodes that start
//! within one second while the CSR API is down for an hour, running the library's own rotation
//! policy with its default backoff, never load the API with a second above 1.5× the outage's
//! mean rate after the first minute, during the outage or when the API comes back; the model
//! of client-go's manager, run beside it, does (its flat 32 s keeps the fleet in lock-step),
//! which shows the simulation can tell the two apart.

#[allow(dead_code)]
#[path = "../examples/herd/sim.rs"]
mod sim;

use certrotate::schedule::Backoff;
use sim::{Fleet, HOUR, OutageFigures, Scenario, simulate};
use std::time::Duration;

const NODES: usize = 10_000;

#[test]
fn the_default_backoff_spreads_a_fleets_retries_during_and_after_an_outage() {
    for seed in [1, 2] {
        let scenario = Scenario::outage(NODES, seed);
        let run = simulate(&scenario, Fleet::Certrotate(Backoff::Spread));
        let OutageFigures {
            mean,
            outage_peak: during,
            recovery_peak: recovery,
            later_peak: later,
            ..
        } = OutageFigures::of(&run, &scenario);
        // One create per node per 32 s on average: the mean itself is no goal, but a mean far
        // from it would mean the simulation lost or doubled attempts.
        let expected = NODES as f64 / 32.0;
        assert!(
            (mean - expected).abs() < expected * 0.05,
            "seed {seed}: mean {mean:.0}/s, want about {expected:.0}/s"
        );
        assert!(
            f64::from(during) <= 1.5 * mean,
            "seed {seed}: busiest second of the outage {during}, mean {mean:.0}"
        );
        assert!(
            f64::from(recovery) <= 1.5 * mean,
            "seed {seed}: busiest second after recovery {recovery}, mean {mean:.0}"
        );
        assert!(
            f64::from(later) <= 2.0 * mean,
            "seed {seed}: busiest second after the first minute {later}, mean {mean:.0}"
        );
        assert!(
            run.first_certificate
                .iter()
                .all(|t| t.is_some_and(|t| t < (HOUR + 60) as f64)),
            "seed {seed}: every node certified within a minute of the API's return"
        );
    }
}

#[test]
fn client_go_keeps_a_fleet_in_lock_step_after_an_outage() {
    for fleet in [Fleet::ClientGo, Fleet::Certrotate(Backoff::ClientGo)] {
        let scenario = Scenario::outage(NODES, 1);
        let run = simulate(&scenario, fleet);
        let OutageFigures {
            mean,
            outage_peak: during,
            recovery_peak: recovery,
            ..
        } = OutageFigures::of(&run, &scenario);
        assert!(
            f64::from(during) > 5.0 * mean && f64::from(recovery) > 5.0 * mean,
            "{fleet:?}: busiest seconds {during} and {recovery}, mean {mean:.0}"
        );
    }
}

/// A server that throttles with `Retry-After` stretches certrotate's delays: when it comes
/// back admitting 100 creates/s, 429 with `Retry-After: 120` for the others, the fleet is
/// refused less than a tenth as often as one that ignores `Retry-After` (the model of
/// client-go's manager), and every node still gets its certificate.
#[test]
fn retry_after_from_a_throttling_api_stretches_the_fleets_delays() {
    let scenario = Scenario::throttled(NODES, 1);
    assert_eq!(scenario.admit, Some((100, Duration::from_secs(120))));
    let ours = simulate(&scenario, Fleet::Certrotate(Backoff::Spread));
    let model = simulate(&scenario, Fleet::ClientGo);
    assert!(
        ours.first_certificate.iter().all(Option::is_some),
        "every node certified"
    );
    assert!(
        ours.throttled * 10 < model.throttled,
        "429s: certrotate {}, client-go model {}",
        ours.throttled,
        model.throttled
    );
}
